"""Sharded training checkpoints (``torch.distributed.checkpoint``) and the Metaflow lineage guard.

Layout of one checkpoint, written by every rank of an FSDP2 job::

    checkpoint_dir/step-000120/
        .metadata, __0_0.distcp ...   model + optimizer shards (DCP; reshardable)
        trainer.pt                    step, scheduler, data position (rank 0)
        rng-rank00000.pt ...          each rank's RNG states
        done-rank00000.json ...       each rank: its shards and RNG file are written
        meta.json                     written last by rank 0, once the checkpoint is complete

A save goes to ``.tmp-step-000120/``. After a barrier rank 0 checks that every rank's
``done`` marker and every file the DCP ``.metadata`` names are present *on its own
filesystem* (where a restart will read them); only then it writes ``meta.json``, renames the
directory and hands it to Metaflow. A crash mid-save, or nodes without a shared filesystem,
leave no complete checkpoint behind: the previous one (or step 0) is resumed, never a
half-present one. Only the newest ``keep_last`` are kept (docs/DESIGN.md §7).

Registration with Metaflow copies the checkpoint into the datastore (~96 GB for the 8B
preset): :class:`MetaflowRegistrar` runs it in a thread of rank 0 while training goes on,
so no rank ever waits for the upload inside a collective.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

CHECKPOINT_RE = re.compile(r"^step-(\d{6,})$")
COMPLETE_MARKER = "meta.json"
RANK_DONE = "done-rank{rank:05d}.json"


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def checkpoint_step(path: Path) -> int | None:
    """The step of a ``step-XXXXXX`` directory; None for any other name."""
    m = CHECKPOINT_RE.match(Path(path).name)
    return int(m.group(1)) if m else None


def list_checkpoints(checkpoint_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first (half-written ``.tmp-*`` directories are ignored)."""
    d = Path(checkpoint_dir)
    if not d.is_dir():
        return []
    found = [(step, p) for p in d.iterdir()
             if (step := checkpoint_step(p)) is not None and (p / COMPLETE_MARKER).is_file()]
    return [p for _, p in sorted(found) if not missing_files(p)]


def missing_files(path: str | Path, world_size: int | None = None) -> list[str]:
    """Files a checkpoint needs that are not in ``path``: the DCP ``.metadata`` itself, every
    shard file it names, each rank's ``done`` marker and RNG file, ``trainer.pt``. Empty = complete.

    ``world_size`` defaults to the one recorded in ``meta.json`` (or in rank 0's marker).
    """
    from torch.distributed.checkpoint import FileSystemReader

    path = Path(path)
    if not (path / ".metadata").is_file():
        return [".metadata"]
    if world_size is None:
        source = path / COMPLETE_MARKER if (path / COMPLETE_MARKER).is_file() else path / RANK_DONE.format(rank=0)
        if not source.is_file():
            return [source.name]
        world_size = int(json.loads(source.read_text())["world_size"])
    try:
        storage = FileSystemReader(str(path)).read_metadata().storage_data or {}
    except Exception as e:  # noqa: BLE001 - a truncated .metadata is as incomplete as a missing one
        return [f".metadata ({type(e).__name__}: {e})"]
    needed = {info.relative_path for info in storage.values()} | {"trainer.pt"}
    for rank in range(world_size):
        needed |= {RANK_DONE.format(rank=rank), f"rng-rank{rank:05d}.pt"}
    return sorted(name for name in needed if not (path / name).is_file())


def latest_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The newest complete checkpoint under ``checkpoint_dir``, or None."""
    found = list_checkpoints(checkpoint_dir)
    return found[-1] if found else None


def agreed_latest_checkpoint(checkpoint_dir: str | Path, device: torch.device | None = None) -> Path | None:
    """Collective: the newest complete checkpoint, if every rank sees the same one, else None.

    Nodes without a shared filesystem each see only their own directory (node 0 holds the
    finished checkpoints): resuming some ranks and not others would deadlock or diverge, so
    the whole gang starts from step 0 instead, and says why.
    """
    found = latest_checkpoint(checkpoint_dir)
    if not dist.is_initialized():
        return found
    step = checkpoint_step(found) if found else -1
    low = torch.tensor([step], dtype=torch.int64, device=device)
    high = low.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if int(low.item()) != int(high.item()):
        if _rank() == 0:
            print(f"[checkpoint] ranks see different checkpoints under {checkpoint_dir} (steps {int(low.item())} to "
                  f"{int(high.item())}; -1 = none): the directory is not shared by every node. Starting from step 0; "
                  "put the work directory on a filesystem all nodes mount to resume multi-node runs.", flush=True)
        return None
    return found


def _state_options():
    """Frozen parameters stay out of checkpoints (DCP's ``ignore_frozen_params``).

    Phase 1 freezes the transformer body: its weights never change, and a resume rebuilds them
    from the same initial model before loading, so only embeddings, head and optimizer are
    written: 2.2x smaller for SmolLM2-135M, and the 1B body is not rewritten every save.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(ignore_frozen_params=True)


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _collective_device() -> torch.device:
    """Where a collective's tensor must live: the current GPU under nccl, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(checkpoint_dir: str | Path, step: int, *, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, trainer_state: dict[str, Any],
                    metadata: dict[str, Any] | None = None, keep_last: int = 2,
                    keep: frozenset[Path] = frozenset()) -> Path | None:
    """Collective: every rank calls it. Returns the ``step-XXXXXX`` directory once it is
    complete on rank 0's filesystem, else None on every rank (the reason printed by rank 0).

    ``trainer_state`` (scheduler state, data position ...) is identical on all ranks and
    written by rank 0; ``metadata`` goes into ``meta.json`` (JSON-able values only). ``keep``:
    checkpoints the rotation must not delete yet (an upload still reading them).
    """
    from torch.distributed.checkpoint import save as dcp_save
    from torch.distributed.checkpoint.state_dict import get_state_dict

    root = Path(checkpoint_dir)
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{checkpoint_name(step)}"
    rank, world_size = _rank(), dist.get_world_size() if dist.is_initialized() else 1
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    _barrier()
    tmp.mkdir(parents=True, exist_ok=True)  # another node's own disk, without a shared filesystem

    model_sd, optim_sd = get_state_dict(model, optimizer, options=_state_options())
    dcp_save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp))
    torch.save(_rng_state(), tmp / f"rng-rank{rank:05d}.pt")
    if rank == 0:
        torch.save({**trainer_state, "step": step}, tmp / "trainer.pt")
    (tmp / RANK_DONE.format(rank=rank)).write_text(json.dumps({"rank": rank, "world_size": world_size}))
    _barrier()

    complete = torch.zeros(1, dtype=torch.int64)
    if rank == 0:
        missing = missing_files(tmp, world_size)
        if missing:
            print(f"[checkpoint] step {step} is not complete under {root} ({len(missing)} files missing, e.g. "
                  f"{missing[:3]}): the directory is not shared by every node. Not registered; a restart "
                  "resumes the previous complete checkpoint or step 0. Put the work directory on a filesystem "
                  "every node mounts to resume multi-node runs.", flush=True)
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            meta = {"step": step, "world_size": world_size, "saved_at": time.time(), **(metadata or {})}
            (tmp / COMPLETE_MARKER).write_text(json.dumps(meta, indent=1))
            if final.exists():  # a rerun reached the same step: replace it
                shutil.rmtree(final)
            os.replace(tmp, final)
            old = list_checkpoints(root)[:-keep_last] if keep_last > 0 else []
            for path in old:
                if path not in keep:
                    shutil.rmtree(path, ignore_errors=True)
            complete[0] = 1
    if dist.is_initialized():
        complete = complete.to(_collective_device())
        dist.broadcast(complete, src=0)
    if rank != 0:  # rank 0 has renamed or removed it; this is another node's own copy
        shutil.rmtree(tmp, ignore_errors=True)
    return final if int(complete[0]) else None


def load_checkpoint(path: str | Path, *, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Collective: load model and optimizer shards in place, restore this rank's RNG.

    Returns the trainer state saved with it (``step``, scheduler, data position ...).
    The world size may differ from the one that saved it (DCP reshards); RNG then comes
    from rank 0's file for ranks that have none.
    """
    from torch.distributed.checkpoint import load as dcp_load
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

    path = Path(path)
    missing = missing_files(path) if (path / COMPLETE_MARKER).is_file() else [COMPLETE_MARKER]
    if missing:
        raise FileNotFoundError(f"{path} is not a complete checkpoint (missing {missing[:5]}); "
                                "resume from latest_checkpoint(), which skips incomplete ones")
    model_sd, optim_sd = get_state_dict(model, optimizer, options=_state_options())
    state = {"model": model_sd, "optim": optim_sd}
    dcp_load(state, checkpoint_id=str(path))  # raises on a trainable key the checkpoint lacks
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"],
                   options=StateDictOptions(ignore_frozen_params=True, strict=False))

    rng_file = path / f"rng-rank{_rank():05d}.pt"
    if not rng_file.is_file():
        rng_file = path / "rng-rank00000.pt"
    _set_rng_state(torch.load(rng_file, weights_only=False))
    return torch.load(path / "trainer.pt", weights_only=False)


def restore_checkpoint(loaded_dir: str | Path, checkpoint_dir: str | Path) -> Path:
    """Put a checkpoint's contents (e.g. ``current.checkpoint.directory``) back as ``step-XXXXXX``.

    Metaflow hands back the *contents* of the registered directory; the workers look for
    ``checkpoint_dir/step-XXXXXX/``. A local copy of the same step is kept as it is.
    """
    loaded = Path(loaded_dir)
    marker = loaded / COMPLETE_MARKER
    if not marker.is_file():
        raise FileNotFoundError(f"{loaded} is not a CPT checkpoint (no {COMPLETE_MARKER}); it was not "
                                "written by azllm.train.checkpointing.save_checkpoint")
    missing = missing_files(loaded)
    if missing:
        raise FileNotFoundError(f"{loaded} is an incomplete CPT checkpoint (missing {missing[:5]}); "
                                "it cannot be resumed")
    step = int(json.loads(marker.read_text())["step"])
    target = Path(checkpoint_dir) / checkpoint_name(step)
    if not (target / COMPLETE_MARKER).is_file():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(loaded, target)
    return target


# ---------------------------------------------------------------------------
# Metaflow
# ---------------------------------------------------------------------------


def accept_loaded_checkpoint(metadata: dict, run_id: str, origin_run_id: str | None) -> bool:
    """Accept a checkpoint that ``@checkpoint`` loaded only if it belongs to this run's lineage.

    ``metadata`` is the loaded checkpoint's info (``current.checkpoint.info``-like dict; the
    run id is read from ``run_id`` or ``pathspec`` "Flow/run/step/task"). Without this guard a
    new run would silently start from the end of an older run of the same flow.
    """
    ckpt_run = metadata.get("run_id")
    if ckpt_run is None and metadata.get("pathspec"):
        parts = str(metadata["pathspec"]).split("/")
        ckpt_run = parts[1] if len(parts) > 1 else None
    if ckpt_run is None:
        return False
    return str(ckpt_run) in {str(run_id), *([str(origin_run_id)] if origin_run_id else [])}


def inside_metaflow_task() -> bool:
    """True in a Metaflow task process or a worker that inherited its checkpoint scope."""
    return bool(os.environ.get("METAFLOW_CHECKPOINT_UID"))


def register_with_metaflow(path: str | Path, metadata: dict | None = None,
                           name: str = "cpt") -> dict | None:
    """Rank 0, after a save: record ``path`` with ``metaflow.Checkpoint().save``.

    No-op (returns None) outside a Metaflow task, i.e. without ``METAFLOW_CHECKPOINT_UID``
    inherited from a step decorated with ``@checkpoint``.
    """
    if not inside_metaflow_task():
        return None
    from metaflow import Checkpoint

    return Checkpoint().save(path=str(path), metadata=metadata or {}, name=name, latest=True)


class MetaflowRegistrar:
    """Rank 0: register complete checkpoints with Metaflow from a background thread.

    The upload is I/O (a copy into the datastore), so it overlaps training instead of holding
    the other ranks in their next collective past the watchdog's timeout; rank 0 never waits
    for it in the loop. When a save comes before the previous upload ended, only the newest
    waiting checkpoint is uploaded next (Metaflow keeps the latest). :meth:`in_flight` names the
    checkpoints the rotation must not delete yet; :meth:`close` waits for the last upload (after
    the workers' final barrier, outside any collective) and raises its error. Outside a
    Metaflow task it does nothing.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: tuple[Path, dict] | None = None
        self._uploading: Path | None = None
        self._closed = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def submit(self, path: Path, metadata: dict) -> None:
        if not inside_metaflow_task():
            return
        with self._cond:
            self._pending = (Path(path), metadata)
            self._cond.notify()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="metaflow-checkpoint", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._pending is None:
                    return
                (path, metadata), self._pending = self._pending, None
                self._uploading = path
            try:
                register_with_metaflow(path, metadata)
                print(f"[checkpoint] registered {path} with Metaflow", flush=True)
            except BaseException as e:  # noqa: BLE001 - re-raised in the training thread by close()
                self._error = e
            with self._cond:
                self._uploading = None

    def in_flight(self) -> frozenset[Path]:
        with self._cond:
            return frozenset(p for p in (self._uploading, self._pending and self._pending[0]) if p)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise RuntimeError("registering a checkpoint with Metaflow failed") from self._error


def loaded_checkpoint_for_this_run() -> Path | None:
    """In a step with ``@checkpoint(load_policy="eager")``: the loaded checkpoint directory, or None.

    None when nothing was loaded or when it comes from another run lineage (checked
    with :func:`accept_loaded_checkpoint`); pass the result as ``run_cpt_phase(resume_from=...)``.
    Verified with metaflow 2.19 + metaflow-checkpoint 0.2.14 on the local datastore: a worker
    subprocess registers, a ``@retry`` attempt loads it; a *new* run eagerly loads the previous
    run's checkpoint, which this rejects.
    """
    from metaflow import current

    ckpt = getattr(current, "checkpoint", None)
    if ckpt is None or not ckpt.is_loaded:
        return None
    info = ckpt.info
    info = info.to_dict() if hasattr(info, "to_dict") else dict(info)
    if not accept_loaded_checkpoint(info, current.run_id, getattr(current, "origin_run_id", None)):
        print(f"[checkpoint] ignoring {info.get('pathspec')}: not from run {current.run_id} or the run it resumes")
        return None
    return Path(ckpt.directory)
