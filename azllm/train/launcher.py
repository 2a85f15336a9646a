"""Launch one CPT phase in torchrun workers from a flow step, `azllm cpt` or any process.

:func:`run_cpt_phase` checks what it can before any process starts, resolves a
:class:`~azllm.train.phase.PhaseSpec`, writes it as JSON, and runs the worker
(:mod:`azllm.train.cpt_worker`) under torchrun; the workers never know they are inside a
flow (docs/DESIGN.md §6)::

    result = run_cpt_phase(cfg.cpt, phase="embeddings", model_dir=..., blocks_path=...,
                           out_dir=..., work_dir=..., layout=TorchrunLayout(nproc_per_node=2))

One node uses ``--standalone`` (torchrun picks a free rendezvous port itself); several
nodes take ``--nnodes/--node_rank/--master_addr/--master_port`` from the
:class:`~azllm.train.phase.TorchrunLayout` (``azllm.compute.distributed.torchrun_layout`` in an
``@parallel`` step). Injected failures (tests) reach the workers through their environment
(:mod:`azllm.train.faults`), never through the spec.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from azllm.config import ConfigError, CptConfig, PhaseConfig
from azllm.config.errors import ReportedFailure
from azllm.train.lifetime import parent_death_signal
from azllm.train.metrics import METRICS_FILE, read_metrics
from azllm.train.phase import DEFAULT_MASTER_PORT, PhaseResult, PhaseSpec, TorchrunLayout

WORKER_MODULE = "azllm.train.cpt_worker"


class WorkerError(ReportedFailure):
    """torchrun workers exited non-zero; the message carries the tail of their log (a RuntimeError)."""


def torchrun_command(module: str, args: list[str], layout: TorchrunLayout) -> list[str]:
    """``python -m torch.distributed.run ... -m MODULE ARGS`` for this interpreter.

    One node: ``--standalone`` (``master_port`` is not needed and ignored). Several nodes:
    static rendezvous on ``master_addr:master_port`` (default 29500), same on every node.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run"]
    if layout.nnodes == 1:
        cmd += ["--standalone", "--nnodes=1"]
    else:
        port = DEFAULT_MASTER_PORT if layout.master_port is None else layout.master_port
        cmd += [f"--nnodes={layout.nnodes}", f"--node_rank={layout.node_rank}",
                f"--master_addr={layout.master_addr}", f"--master_port={port}"]
    cmd += [f"--nproc_per_node={layout.nproc_per_node}", "-m", module, *args]
    return cmd


def run_torchrun(cmd: list[str], log_path: str | Path, env: dict[str, str] | None = None,
                 tail_lines: int = 60) -> None:
    """Run ``cmd``, echo every line to stdout and ``log_path``; raise :class:`WorkerError` on failure.

    ``env`` is added to (not substituted for) this process's environment, so workers
    inherit Metaflow's variables (e.g. ``METAFLOW_CHECKPOINT_UID``).
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env,
                                text=True, errors="replace", bufsize=1,
                                preexec_fn=parent_death_signal())  # torchrun dies with this process
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
            tail.append(line)
        rc = proc.wait()
        sys.stdout.flush()
    if rc != 0:
        raise WorkerError(f"torchrun exited with code {rc} (full log: {log_path}); last lines:\n"
                          + "".join(tail))


# ---------------------------------------------------------------------------
# One CPT phase
# ---------------------------------------------------------------------------


def training_processes_per_node(gpus_per_node: int, cpu_processes: int) -> int:
    """torchrun's nproc_per_node: one per GPU, else the configured CPU process count."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return gpus_per_node or cpu_processes


def gpu_report() -> dict:
    """``{"count", "bf16"}`` of this host's CUDA GPUs, asked in a child process: a CUDA query in
    the step process (``is_bf16_supported`` creates a context) would hold ~0.4 GB on GPU 0 for
    the whole run, beside the workers. ``count`` 0 (and no child) where CUDA is absent."""
    import torch

    if not torch.cuda.is_available():  # NVML only: creates no context
        return {"count": 0, "bf16": False}
    probe = ("import json, torch; print(json.dumps({'count': torch.cuda.device_count(), "
             "'bf16': torch.cuda.is_bf16_supported(including_emulation=False)}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def check_devices(mixed_precision: str, nproc: int) -> None:
    """Before any process group: the device the preset asks for must be there. Leaves CUDA
    uninitialised in this process (see :func:`gpu_report`)."""
    gpus = gpu_report()
    if mixed_precision == "bf16" and not gpus["bf16"]:
        raise ValueError('[cpt.runtime] mixed_precision = "bf16" needs a CUDA GPU with native bf16 and there is '
                         'none here; set mixed_precision = "auto" (bf16 where available, else fp32) or "fp32" '
                         'in the preset')
    if gpus["count"] and nproc > gpus["count"]:
        raise ValueError(f"nproc {nproc} is more than the {gpus['count']} GPUs present; "
                         f"use {gpus['count']} or fewer processes per node")


def phase_spec(cfg: CptConfig, *, phase: str, model_dir: Path, blocks_path: Path, out_dir: Path,
               work_dir: Path, attn_implementation: str = "sdpa") -> PhaseSpec:
    """The worker's spec for ``phase`` of ``cfg`` (its section and ``[cpt.runtime]`` whole), with
    every path absolute and the workers' own files under ``work_dir``."""
    work_dir = Path(work_dir)
    return PhaseSpec(phase=phase, hparams=getattr(cfg, phase, None), runtime=cfg.runtime,
                     model_dir=str(Path(model_dir).resolve()), blocks_path=str(Path(blocks_path).resolve()),
                     out_dir=str(Path(out_dir).resolve()),
                     checkpoint_dir=str((work_dir / "checkpoints").resolve()),
                     tensorboard_dir=str((work_dir / "tensorboard").resolve()),
                     metrics_path=str((work_dir / METRICS_FILE).resolve()),
                     attn_implementation=attn_implementation)


def run_cpt_phase(cfg: CptConfig, *, phase: str, model_dir: Path, blocks_path: Path, out_dir: Path,
                  work_dir: Path, layout: TorchrunLayout, resume_from: Path | None = None,
                  attn_implementation: str = "sdpa", checkpoint_store: str | None = None,
                  resume_store: str | None = None, env: dict[str, str] | None = None) -> PhaseResult:
    """Run one CPT phase in torchrun workers; returns the exported model and its metrics.

    ``work_dir`` holds spec.json, checkpoints/ (rerunning with the same work_dir resumes
    from the latest complete checkpoint), tensorboard/, metrics.jsonl and worker.log.
    ``layout``: this node's processes and place among the nodes.
    ``resume_from``: a checkpoint directory restored by Metaflow (see
    :func:`azllm.train.checkpointing.loaded_checkpoint_for_this_run`), copied into
    checkpoints/ first; a newer local checkpoint still wins. ``checkpoint_store`` (several nodes
    without a shared filesystem): every rank uploads its checkpoint files there beside training;
    each node resumes the newest checkpoint complete there, and node 0 deletes what only a resume
    needed once the phase has exported its model (docs/DESIGN.md §7). ``resume_store``: where the
    run this one resumes kept its checkpoints, read when ``checkpoint_store`` holds none yet.
    ``env``: added to the workers' environment (which they inherit from this process anyway);
    tests inject failures with it (``{"AZLLM_FAIL_AFTER_TRAIN_STEP": "cpt_full:3"}``, azllm.train.faults).
    """
    from azllm.train.blocks import load_training_blocks
    from azllm.train.checkpointing import (
        CheckpointStore,
        checkpoint_step,
        finish_store,
        restore_checkpoint,
        restore_from_store,
        resumable_checkpoint,
    )
    from azllm.train.resume import check_resume, training_settings

    spec = phase_spec(cfg, phase=phase, model_dir=model_dir, blocks_path=blocks_path, out_dir=out_dir,
                      work_dir=work_dir, attn_implementation=attn_implementation)  # checks the phase name
    model_dir, blocks_path, out_dir, work_dir = map(Path, (model_dir, blocks_path, out_dir, work_dir))
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not an HF model directory (no config.json); "
                                "the previous step (load/adapt vocabulary or phase 1) makes it")
    if not blocks_path.exists():
        raise FileNotFoundError(f"packed blocks {blocks_path} do not exist; they are made by "
                                "azllm.data.packing.pack_corpus (did packing run for this arm?)")
    check_devices(spec.runtime.mixed_precision, layout.nproc_per_node)
    check_outer_layers(spec.hparams, model_dir)
    block_size = int(load_training_blocks(blocks_path).shape[1])
    check_block_size(block_size, model_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if resume_from is not None:
        print(f"[cpt] restored {restore_checkpoint(resume_from, work_dir / 'checkpoints')}", flush=True)
    notes: list[str] = []  # what the choice of checkpoint says goes to stdout and worker.log

    def note(line: str) -> None:
        print(line, flush=True)
        notes.append(line + "\n")

    store = CheckpointStore(checkpoint_store) if checkpoint_store else None
    resume = (restore_from_store(store, spec.checkpoint_dir, log=note) if store is not None
              else resumable_checkpoint(spec.checkpoint_dir, log=note))
    if store is not None and resume is None and resume_store:
        resume = restore_from_store(CheckpointStore(resume_store), spec.checkpoint_dir, log=note)
    if resume is not None:  # printed before any worker loads it
        note(f"[checkpoint] {resume} (step {checkpoint_step(resume)}) is complete and intact: resuming it")
    check_resume(resume, training_settings(phase, spec.hparams, block_size=block_size, seed=spec.runtime.seed),
                 allow=spec.runtime.allow_config_change_on_resume)
    with open(work_dir / "worker.log", "a", encoding="utf-8") as log:
        log.writelines(notes)
    spec = dataclasses.replace(spec, checkpoint_store=store.url if store is not None else None,
                               resume_checkpoint=str(resume) if resume is not None else None)
    spec_path = work_dir / "spec.json"
    spec_path.write_text(spec.to_json(), encoding="utf-8")
    cmd = torchrun_command(WORKER_MODULE, ["--spec", str(spec_path)], layout)
    print(f"[cpt] launching: {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    run_torchrun(cmd, work_dir / "worker.log", env=env)
    wall_s = time.perf_counter() - t0
    if layout.is_main_node and not (out_dir / "config.json").is_file():
        raise RuntimeError(f"workers exited cleanly but wrote no model to {out_dir}; see {work_dir / 'worker.log'}")
    if store is not None and layout.is_main_node:
        freed = finish_store(store)
        print(f"[cpt] phase done: deleted {freed:,} bytes of resume-only checkpoint files from {store.url}", flush=True)
    metrics = read_metrics(spec.metrics_path)  # written by global rank 0 only (node_rank 0)
    world_size = metrics.get("world_size") or layout.nproc_per_node * layout.nnodes
    metrics.update(device_hours(wall_s, world_size=world_size, device=metrics.get("device") or ""))
    return PhaseResult(model_dir=out_dir, metrics=metrics,
                       checkpoint_dir=Path(spec.checkpoint_dir), tensorboard_dir=Path(spec.tensorboard_dir))


def check_outer_layers(train: PhaseConfig, model_dir: Path) -> None:
    """``embeddings+outer:K`` trains 2K distinct decoder layers: the one check of K against the
    model's config.json, before any process starts (the worker only asserts it on the built model).
    The arm's phase 1 (azllm.train.arms) runs it on the base model, before adapting the vocabulary."""
    k = train.num_outer_layers
    if not k:
        return
    num_layers = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8")).get("num_hidden_layers")
    if num_layers is not None and 2 * k > num_layers:
        raise ConfigError(f"[cpt.embeddings] train={train.train!r} trains the first {k} and the last {k} decoder "
                          f"layers, but {model_dir} has num_hidden_layers={num_layers}; use K <= {num_layers // 2} "
                          f"(e.g. train='embeddings+outer:{max(1, num_layers // 2)}') or train='embeddings'")


def model_context(model_dir: Path) -> int | None:
    """``max_position_embeddings`` of an HF model directory's config.json (None when it names none)."""
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    return config.get("max_position_embeddings")


def check_block_size(block_size: int, model_dir: Path) -> None:
    """Before any process starts: a training block must fit the positions the model knows.

    A longer block trains positions the model never saw while the exported config.json still
    names the old context (and at several times it runs out of memory in a rank)."""
    context = model_context(model_dir)
    if context is not None and block_size > context:
        raise ConfigError(f"[cpt] block_size = {block_size} is longer than the model's context: "
                          f"{model_dir}/config.json has max_position_embeddings = {context}; "
                          f"set [cpt] block_size <= {context}")


def device_hours(wall_s: float, *, world_size: int, device: str) -> dict[str, float]:
    """What a launch cost: ``device_hours`` = wall seconds x training processes / 3600 (one process
    per GPU on a GPU host, so these are GPU-hours there); ``gpu_hours`` is that on CUDA, else 0.
    The wall time is the whole torchrun launch (start-up, training, checkpoints, export) of this
    attempt only: a phase that resumed after a failure does not count the failed attempt."""
    hours = wall_s * world_size / 3600
    return {"wall_s": wall_s, "device_hours": hours, "gpu_hours": hours if device.startswith("cuda") else 0.0}
