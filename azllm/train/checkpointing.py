"""Sharded training checkpoints (``torch.distributed.checkpoint``) and the Metaflow lineage guard.

Layout of one checkpoint, written by every rank of an FSDP2 job::

    checkpoint_dir/step-000120/
        .metadata, __0_0.distcp ...   model + optimizer shards (DCP; reshardable)
        trainer.pt                    step, scheduler, data position (rank 0)
        rng-rank00000.pt ...          each rank's RNG states
        done-rank00000.json ...       each rank: the size and checksum of each file it wrote
        meta.json                     written last by rank 0: every rank's sizes and checksums

Complete means :func:`manifest_problems` finds nothing: every file ``meta.json`` records (DCP's
``.metadata`` and every shard it names, each rank's marker and RNG file, ``trainer.pt``) is
there with the size, and before a resume the checksum, recorded as it was written. A damaged
newest checkpoint is skipped with one line and the previous one resumed
(:func:`resumable_checkpoint`); the launcher prints the path before any worker loads it.

One node (or a filesystem every node mounts): a save goes to ``.tmp-step-000120/``; rank 0
gathers every rank's file table, checks it against its own filesystem, writes ``meta.json``,
renames the directory and hands it to Metaflow. :class:`MetaflowRegistrar` uploads it from a
thread of rank 0 while training goes on, so no rank waits for the upload inside a collective.

Several nodes without a shared filesystem: a :class:`CheckpointStore` (the flow's datastore,
S3 in the cloud) is where checkpoints meet. Each rank stages its own files on its node's disk
and a :class:`StoreUploader` thread uploads them beside training; completeness is decided
from what the store lists (:func:`store_problems`); a restart downloads the newest complete
one on every node (:func:`restore_from_store`). Only the newest ``keep_last`` are kept, on
disk and in the store; a finished phase keeps only :data:`KEPT_AFTER_PHASE` (docs/DESIGN.md §7).
"""

from __future__ import annotations

import json
import os
import queue
import random
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import xxhash

CHECKPOINT_RE = re.compile(r"^step-(\d{6,})$")
COMPLETE_MARKER = "meta.json"
RANK_DONE = "done-rank{rank:05d}.json"
FILES_KEY = "files"
"""``meta.json``'s table: file name -> {"size", CHECKSUM} as each rank wrote it."""
CHECKSUM = "xxh3_128"
"""xxHash3 128-bit (already pinned for the data path): ~10x sha256's speed, enough to catch a
truncated or corrupted file; not a defence against tampering."""


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
    return [p for _, p in sorted(found) if not checkpoint_problems(p, checksums=False)]


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


def file_record(path: str | Path) -> dict[str, Any]:
    """``{"size": bytes, CHECKSUM: hex}`` of one file, read in 16 MiB chunks."""
    h, size = xxhash.xxh3_128(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
            size += len(chunk)
    return {"size": size, CHECKSUM: h.hexdigest()}


def _sizes(path: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in path.iterdir() if p.is_file()} if path.is_dir() else {}


def required_files(world_size: int) -> set[str]:
    """Files every checkpoint has: DCP's ``.metadata``, ``trainer.pt``, each rank's marker and RNG."""
    names = {".metadata", "trainer.pt"}
    for rank in range(world_size):
        names |= {RANK_DONE.format(rank=rank), f"rng-rank{rank:05d}.pt"}
    return names


def manifest_problems(meta: Mapping[str, Any] | None, sizes: Mapping[str, int],
                      digest: Callable[[str], str] | None = None) -> list[str]:
    """THE completeness and integrity rule of a checkpoint, wherever it lies; empty = complete.

    ``meta``: its ``meta.json`` (None when missing or unreadable); ``sizes``: name -> size of the
    files that are actually there (a local directory or the checkpoint store, never one node's
    idea of them); ``digest``: name -> checksum of the file as it is now (None: sizes only).
    Complete = ``meta.json`` names every file a checkpoint needs (:func:`required_files`; DCP's
    shard files were checked against ``.metadata`` when it was written), and each is present with
    the size, and (with ``digest``) the checksum, recorded when it was written. A truncated,
    half-uploaded or missing file, or a missing rank's marker, makes it incomplete.
    """
    if meta is None:
        return [f"{COMPLETE_MARKER} is missing or unreadable (the save did not finish)"]
    files = meta.get(FILES_KEY) or {}
    problems = [f"{name} is not recorded in {COMPLETE_MARKER}"
                for name in sorted(required_files(int(meta.get("world_size", 1))) - files.keys())]
    for name, rec in sorted(files.items()):
        if name not in sizes:
            problems.append(f"{name} is missing")
        elif sizes[name] != rec["size"]:
            problems.append(f"{name} has {sizes[name]:,} bytes where {rec['size']:,} were written (truncated "
                            "or partly copied)")
        elif digest is not None and digest(name) != rec[CHECKSUM]:
            problems.append(f"{name}: its {CHECKSUM} checksum differs from the one recorded when it was written")
    return problems


def checkpoint_problems(path: str | Path, *, checksums: bool = True) -> list[str]:
    """:func:`manifest_problems` of a local ``step-XXXXXX`` directory; empty = complete and intact.

    ``checksums=False`` checks presence and sizes only (the rotation after each save);
    resuming checks the checksums too (:func:`resumable_checkpoint`). A checkpoint written
    before sizes and checksums were recorded is checked for presence (:func:`missing_files`).
    """
    path = Path(path)
    try:
        meta = json.loads((path / COMPLETE_MARKER).read_text())
    except (OSError, ValueError):
        meta = None
    if meta is not None and FILES_KEY not in meta:
        return missing_files(path)
    digest = (lambda name: file_record(path / name)[CHECKSUM]) if checksums else None
    return manifest_problems(meta, _sizes(path), digest)


def _skip_line(where: str, problems: list[str]) -> str:
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"[checkpoint] skipping {where}: {problems[0]}{more}; trying the previous one"


def _say(line: str) -> None:
    print(line, flush=True)


def resumable_checkpoint(checkpoint_dir: str | Path, log: Callable[[str], None] = _say) -> Path | None:
    """The newest ``step-XXXXXX`` under ``checkpoint_dir`` that is complete and intact (sizes and
    checksums, :func:`checkpoint_problems`), or None. A damaged newer one is skipped with one line
    naming it and why; it is left in place (the next save of that step replaces it)."""
    d = Path(checkpoint_dir)
    if not d.is_dir():
        return None
    for _, path in sorted(((step, p) for p in d.iterdir() if (step := checkpoint_step(p)) is not None),
                          reverse=True):
        problems = checkpoint_problems(path)
        if not problems:
            return path
        log(_skip_line(str(path), problems))
    return None


def latest_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The newest complete checkpoint under ``checkpoint_dir``, or None."""
    found = list_checkpoints(checkpoint_dir)
    return found[-1] if found else None


def agreed_checkpoint(path: str | Path | None, device: torch.device | None = None) -> Path | None:
    """Collective: ``path`` (chosen by each node's launcher, :func:`resumable_checkpoint`), if every
    rank was given the same step, else None on every rank (the whole gang starts at step 1)."""
    found = Path(path) if path else None
    if not dist.is_initialized():
        return found
    step = checkpoint_step(found) if found else -1
    low = torch.tensor([step], dtype=torch.int64, device=device)
    high = low.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if int(low.item()) != int(high.item()):
        if _rank() == 0:
            print(f"[checkpoint] nodes found different checkpoints to resume (steps {int(low.item())} to "
                  f"{int(high.item())}; -1 = none): their checkpoint directories are not shared and no "
                  "checkpoint store was given. Starting from step 1; run several nodes with a checkpoint "
                  "store (run_cpt_phase(checkpoint_store=...)) to resume them.", flush=True)
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
                    keep: frozenset[Path] = frozenset(),
                    uploader: StoreUploader | None = None) -> Path | None:
    """Collective: every rank calls it. Returns the ``step-XXXXXX`` directory once it is
    complete on rank 0's filesystem, else None on every rank (the reason printed by rank 0).

    ``trainer_state`` (scheduler state, data position ...) is identical on all ranks and
    written by rank 0; ``metadata`` goes into ``meta.json`` (JSON-able values only). ``keep``:
    checkpoints the rotation must not delete yet (an upload still reading them).

    Every rank records the size and checksum of each file it wrote, as it wrote them (its
    ``done`` marker); rank 0 gathers them into ``meta.json``'s ``files`` table, which
    :func:`checkpoint_problems` checks before anything is resumed.

    ``uploader`` (nodes without a shared filesystem, :class:`StoreUploader`): each rank writes
    into its own staging directory on its node's disk and hands its files to the uploader,
    which copies them to the checkpoint store beside training; returns None (completeness is
    then decided in the store, :func:`store_problems`).
    """
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint import save as dcp_save
    from torch.distributed.checkpoint.state_dict import get_state_dict

    root = Path(checkpoint_dir)
    name = checkpoint_name(step)
    final = root / name
    rank, world_size = _rank(), dist.get_world_size() if dist.is_initialized() else 1
    if uploader is None:
        tmp = root / f".tmp-{name}"  # shared by every rank that shares the filesystem
        if rank == 0:
            root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
        _barrier()
        tmp.mkdir(parents=True, exist_ok=True)  # another node's own disk, without a shared filesystem
    else:
        tmp = staging_dir(root, rank) / name  # this rank's files only, until they are uploaded
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)

    model_sd, optim_sd = get_state_dict(model, optimizer, options=_state_options())
    dcp_save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp))
    torch.save(_rng_state(), tmp / f"rng-rank{rank:05d}.pt")
    if rank == 0:
        torch.save({**trainer_state, "step": step}, tmp / "trainer.pt")
    # DCP names each rank's shard files __<rank>_<n>.distcp; rank 0 also writes .metadata
    mine = [f"rng-rank{rank:05d}.pt", *sorted(p.name for p in tmp.glob(f"__{rank}_*.distcp"))]
    mine += [".metadata", "trainer.pt"] if rank == 0 else []
    records = {n: file_record(tmp / n) for n in mine}
    done = RANK_DONE.format(rank=rank)
    (tmp / done).write_text(json.dumps({"rank": rank, "world_size": world_size, FILES_KEY: records}))
    records[done] = file_record(tmp / done)
    gathered: list[Any] | None = [None] * world_size if rank == 0 else None
    if dist.is_initialized():
        dist.gather_object(records, gathered, dst=0)  # also the barrier: every rank's files are written
    else:
        gathered = [records]

    complete = torch.zeros(1, dtype=torch.int64)
    if rank == 0:
        files = {k: v for r in gathered for k, v in r.items()}
        storage = FileSystemReader(str(tmp)).read_metadata().storage_data or {}
        named = {info.relative_path for info in storage.values()}
        if named - files.keys():
            raise RuntimeError(f"DCP wrote shard files that no rank recorded ({sorted(named - files.keys())[:3]}): "
                               "its file naming changed; update save_checkpoint")
        meta = {"step": step, "world_size": world_size, "saved_at": time.time(), **(metadata or {}),
                FILES_KEY: files}
        if uploader is not None:
            (tmp / COMPLETE_MARKER).write_text(json.dumps(meta, indent=1))
        else:
            problems = manifest_problems(meta, _sizes(tmp))
            if problems:
                print(f"[checkpoint] step {step} is not complete under {root} ({len(problems)} problems, e.g. "
                      f"{problems[:3]}): the directory is not shared by every node. Not registered; a restart "
                      "resumes the previous complete checkpoint or step 0. Give the phase a checkpoint store "
                      "(run_cpt_phase(checkpoint_store=...), set by the flow on several nodes) or a filesystem "
                      "every node mounts to resume multi-node runs.", flush=True)
                shutil.rmtree(tmp, ignore_errors=True)
            else:
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
    if uploader is not None:
        uploader.submit(step, tmp, [*mine, done, *([COMPLETE_MARKER] if rank == 0 else [])])
        return None
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
    problems = checkpoint_problems(path, checksums=False)  # checksums: checked by resumable_checkpoint
    if problems:
        raise FileNotFoundError(f"{path} is not a complete checkpoint ({problems[:5]}); "
                                "resume from resumable_checkpoint(), which skips incomplete ones")
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
    problems = checkpoint_problems(loaded)
    if problems:
        raise FileNotFoundError(f"{loaded} is an incomplete or damaged CPT checkpoint ({problems[:5]}); "
                                "it cannot be resumed")
    step = int(json.loads(marker.read_text())["step"])
    target = Path(checkpoint_dir) / checkpoint_name(step)
    if not (target / COMPLETE_MARKER).is_file():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(loaded, target)
    return target


# ---------------------------------------------------------------------------
# Checkpoint store: nodes without a shared filesystem
# ---------------------------------------------------------------------------


def staging_dir(checkpoint_dir: str | Path, rank: int) -> Path:
    """Where one rank writes a checkpoint before uploading it (its node's own disk)."""
    return Path(checkpoint_dir) / f".staging-rank{rank:05d}"


class CheckpointStore:
    """One place every node reads and writes: ``s3://bucket/prefix`` or a local directory.

    The flow points it at its datastore (S3 in the cloud, the local datastore on one machine;
    ``azllm.compute.distributed.checkpoint_store_url``). Keys are ``step-XXXXXX/<file>``. S3 goes
    through boto3 (endpoint from ``AWS_ENDPOINT_URL`` as everywhere in azllm; an upload becomes
    visible only once complete); a directory gets ``<file>.part`` renamed when copied, and
    ``.part`` files are never listed. Written here rather than through fsspec/s3fs: s3fs pins
    aiobotocore, whose botocore range conflicts with the boto3 that Metaflow and azllm pin, and
    the four operations below are all a checkpoint needs.
    """

    def __init__(self, url: str) -> None:
        self.url = str(url).rstrip("/")
        self._s3 = None
        if self.url.startswith("s3://"):
            import boto3

            self._bucket, _, prefix = self.url[5:].partition("/")
            self._prefix = prefix.strip("/")
            self._s3 = boto3.client("s3")
        else:
            self._root = Path(self.url.removeprefix("file://"))

    def _key(self, rel: str) -> str:
        return f"{self._prefix}/{rel}" if self._prefix else rel

    def put(self, local: Path, rel: str) -> None:
        if self._s3 is not None:
            self._s3.upload_file(str(local), self._bucket, self._key(rel))
            return
        dest = self._root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        shutil.copyfile(local, part)
        os.replace(part, dest)

    def get(self, rel: str, local: Path) -> None:
        if self._s3 is not None:
            self._s3.download_file(self._bucket, self._key(rel), str(local))
        else:
            shutil.copyfile(self._root / rel, local)

    def read_bytes(self, rel: str) -> bytes | None:
        try:
            if self._s3 is not None:
                return self._s3.get_object(Bucket=self._bucket, Key=self._key(rel))["Body"].read()
            return (self._root / rel).read_bytes()
        except (OSError, self._missing_errors()):
            return None

    def _missing_errors(self) -> type[BaseException] | tuple:
        return self._s3.exceptions.NoSuchKey if self._s3 is not None else ()

    def listing(self) -> dict[str, int]:
        """Every object under the store: relative key -> size."""
        if self._s3 is not None:
            out, start = {}, f"{self._prefix}/" if self._prefix else ""
            for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=start):
                for obj in page.get("Contents", []):
                    out[obj["Key"][len(start):]] = int(obj["Size"])
            return out
        if not self._root.is_dir():
            return {}
        return {p.relative_to(self._root).as_posix(): p.stat().st_size for p in self._root.rglob("*")
                if p.is_file() and not p.name.endswith(".part")}

    def delete(self, rels: list[str]) -> None:
        if self._s3 is not None:
            for i in range(0, len(rels), 1000):  # S3's per-request limit
                batch = [{"Key": self._key(r)} for r in rels[i:i + 1000]]
                if batch:
                    self._s3.delete_objects(Bucket=self._bucket, Delete={"Objects": batch, "Quiet": True})
            return
        for rel in rels:
            (self._root / rel).unlink(missing_ok=True)


def store_checkpoints(store: CheckpointStore) -> dict[int, dict[str, int]]:
    """What the store holds: step -> {file name: size}, complete or not."""
    found: dict[int, dict[str, int]] = {}
    for rel, size in store.listing().items():
        folder, _, name = rel.partition("/")
        step = checkpoint_step(Path(folder))
        if step is not None and name and "/" not in name:
            found.setdefault(step, {})[name] = size
    return found


def store_problems(store: CheckpointStore, step: int, files: Mapping[str, int]) -> list[str]:
    """:func:`manifest_problems` of one checkpoint in the store, from what the store lists (checksums
    are checked once downloaded, :func:`restore_from_store`)."""
    raw = store.read_bytes(f"{checkpoint_name(step)}/{COMPLETE_MARKER}") if COMPLETE_MARKER in files else None
    try:
        meta = json.loads(raw) if raw is not None else None
    except ValueError:
        meta = None
    return manifest_problems(meta, {k: v for k, v in files.items() if k != COMPLETE_MARKER})


def restore_from_store(store: CheckpointStore, checkpoint_dir: str | Path,
                       log: Callable[[str], None] = _say) -> Path | None:
    """Per node, before the workers start: download the newest checkpoint complete in the store
    into ``checkpoint_dir/step-XXXXXX`` and return it (None: nothing complete; start at step 1).

    Every node reads the same store and so picks the same step. Incomplete ones (an upload cut
    short, a rank's shard missing) and copies whose checksums disagree are skipped with one line
    each. Other ``step-*`` directories and staging left here by an earlier attempt are removed:
    the store, not this disk, says what is complete.
    """
    root = Path(checkpoint_dir)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".staging-rank*"):
        shutil.rmtree(stale, ignore_errors=True)
    chosen = None
    for step, files in sorted(store_checkpoints(store).items(), reverse=True):
        where = f"{store.url}/{checkpoint_name(step)}"
        problems = store_problems(store, step, files)
        if problems:
            log(_skip_line(where, problems))
            continue
        target = root / checkpoint_name(step)
        if checkpoint_problems(target):  # not here yet, or not intact: download it
            tmp = root / f".restore-{checkpoint_name(step)}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            for name in files:
                store.get(f"{checkpoint_name(step)}/{name}", tmp / name)
            problems = checkpoint_problems(tmp)
            if problems:
                log(_skip_line(f"{where} (downloaded)", problems))
                shutil.rmtree(tmp, ignore_errors=True)
                continue
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
        chosen = target
        break
    for path in root.iterdir():
        if path != chosen and (checkpoint_step(path) is not None or path.name.startswith(".restore-")):
            shutil.rmtree(path, ignore_errors=True)
    return chosen


def rotate_store(store: CheckpointStore, keep_last: int) -> list[int]:
    """Delete every checkpoint older than the ``keep_last`` newest complete ones (complete or not:
    uploads are in step order, so an older incomplete one is abandoned); returns the steps deleted."""
    found = store_checkpoints(store)
    complete = [step for step in sorted(found) if not store_problems(store, step, found[step])]
    if keep_last <= 0 or len(complete) <= keep_last:
        return []
    oldest_kept = complete[-keep_last]
    gone = [step for step in found if step < oldest_kept]
    store.delete([f"{checkpoint_name(step)}/{name}" for step in gone for name in found[step]])
    return gone


KEPT_AFTER_PHASE = (COMPLETE_MARKER, "trainer.pt")
"""What a finished phase keeps in the store, of its last checkpoint only: the file table, step,
phase (``meta.json``) and the scheduler and data position (``trainer.pt``), for inspection. The
weights are in the exported model; shards, optimizer state and RNG only served a resume."""


def finish_store(store: CheckpointStore) -> int:
    """After a phase ended and exported its model: delete what only a resume needed; returns the
    number of bytes freed. Keeps :data:`KEPT_AFTER_PHASE` of the newest checkpoint."""
    found = store_checkpoints(store)
    newest = max(found, default=None)
    doomed = {f"{checkpoint_name(step)}/{name}": size for step, files in found.items() for name, size in files.items()
              if not (step == newest and name in KEPT_AFTER_PHASE)}
    store.delete(sorted(doomed))
    return sum(doomed.values())


class StoreUploader:
    """Every rank, on nodes without a shared filesystem: upload this rank's files of each
    checkpoint to the store from a thread, beside training, in step order.

    Each rank uploads only what it wrote (its shards, RNG file, then its ``done`` marker; rank 0
    also ``.metadata``, ``trainer.pt`` and, last, ``meta.json`` with every rank's sizes and
    checksums). No rank waits for another: completeness is decided from what the store holds
    (:func:`store_problems`), so an upload cut short by a failure is never taken for complete.
    Rank 0 applies ``keep_last`` in the store before each upload (:func:`rotate_store`). The
    staging copy is deleted once uploaded. :meth:`close` waits for the last upload (outside any
    collective) and raises its error.
    """

    def __init__(self, store: CheckpointStore, *, rank: int, keep_last: int = 2,
                 kill_mid_upload_of: int | None = None) -> None:
        self.store, self.rank, self.keep_last = store, rank, keep_last
        self._kill_step = kill_mid_upload_of  # tests: azllm.train.faults.sigkill_mid_upload
        self._jobs: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.seconds: dict[int, float] = {}
        """Upload wall time of each step (this rank's files), for the benchmark."""

    def submit(self, step: int, staging: Path, names: list[str]) -> None:
        self._jobs.put((step, Path(staging), list(names)))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="checkpoint-upload", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        previous = None
        while (job := self._jobs.get()) is not None:
            step, staging, names = job
            try:
                t0 = time.perf_counter()
                if self.rank == 0:
                    rotate_store(self.store, self.keep_last)
                for i, name in enumerate(names):
                    self.store.put(staging / name, f"{checkpoint_name(step)}/{name}")
                    if i == 0 and step == self._kill_step:
                        self._kill_after_complete(previous)
                self.seconds[step] = time.perf_counter() - t0
                size = sum((staging / name).stat().st_size for name in names)
                shutil.rmtree(staging, ignore_errors=True)
                if self.rank == 0:
                    print(f"[checkpoint] rank 0 uploaded its files of step {step} ({size:,} bytes) to "
                          f"{self.store.url} in {self.seconds[step]:.2f} s", flush=True)
                previous = step
            except BaseException as e:  # noqa: BLE001 - re-raised in the training thread by close()
                self._error = e

    def _kill_after_complete(self, previous: int | None) -> None:
        """Fault injection: once the previous checkpoint is complete in the store, SIGKILL this
        process mid-way through this upload (its first file is there, its shards and marker not)."""
        deadline = time.monotonic() + 120
        while previous is not None and time.monotonic() < deadline:
            files = store_checkpoints(self.store).get(previous, {})
            if not store_problems(self.store, previous, files):
                break
            time.sleep(0.2)
        print(f"[checkpoint] rank {self.rank}: SIGKILL mid-way through the upload (injected)", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise RuntimeError(f"uploading a checkpoint to {self.store.url} failed") from self._error


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
