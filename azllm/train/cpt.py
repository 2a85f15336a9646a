"""Continued pre-training (CPT) of a causal LM with FSDP2: one phase per launch.

Worker entrypoint, one resolved spec (see :class:`PhaseSpec`), launched by torchrun::

    python -m torch.distributed.run --standalone --nproc_per_node=2 -m azllm.train.cpt --spec spec.json

From a flow step (or any Python process), :func:`run_cpt_phase` writes the spec,
launches the workers and returns the exported model and metrics::

    result = run_cpt_phase(cfg.cpt, phase="embeddings", model_dir=..., blocks_path=...,
                           out_dir=..., work_dir=..., nproc_per_node=2)

Phases: ``embeddings`` trains the input embeddings (and an untied lm_head) only;
``full`` trains everything. On CPU the workers use gloo and fp32; on CUDA nccl and,
per ``mixed_precision``, bf16 parameters with fp32 gradient reduction.

Packing is GPT-style: documents share a block separated by EOS and attention crosses
that boundary (azllm.data.packing documents the alternatives). Checkpoints resume
bit-exactly on CPU (tests/test_cpt.py); several nodes need a shared checkpoint_dir.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from azllm.config import CptConfig, PhaseConfig, section_from_dict

PHASES = ("embeddings", "full")

PEAK_FLOPS_BF16 = {
    # Dense bf16 tensor-core peak per GPU (vendor datasheets, no sparsity), as torchtitan's
    # get_peak_flops: MFU is quoted against bf16 peak even when training in fp32.
    "H200": 989e12,
    "H100": 989e12,  # SXM; the PCIe card is 756e12
    "A100": 312e12,
    "A10G": 70e12,  # AWS g5; approximate (A10 is 125e12 at higher clocks and power): check before quoting
    "L40S": 362e12,
    "L4": 121e12,
}

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja",
                   "generation_config.json")


@dataclass(kw_only=True)
class PhaseSpec:
    """Everything one CPT phase needs, resolved; serialised to JSON for the workers."""

    phase: str
    """`embeddings` (input embeddings + untied head only) or `full`."""
    train: PhaseConfig
    model_dir: str
    """HF model directory to start from (its tokenizer files are copied to the export)."""
    blocks_path: str
    """Packed token blocks (num_blocks, block_size), from azllm.data.packing.pack_corpus."""
    out_dir: str
    """Final HF model directory (safetensors)."""
    checkpoint_dir: str
    """Sharded DCP checkpoints, step-XXXXXX/; the latest complete one is resumed at start."""
    tensorboard_dir: str
    """SummaryWriter logs (rank 0): <phase>/loss, lr, grad_norm, tokens_per_s, peak_mem_gib, mfu."""
    metrics_path: str
    """JSON lines: one record per log step plus `event` records (start, resume, export)."""
    mixed_precision: str = "auto"
    liger: bool = True
    seed: int = 0
    fail_after_step: int | None = None
    """Raise right after the checkpoint of this step is written (failure-injection tests)."""

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"phase={self.phase!r}; accepted: {list(PHASES)}")
        if isinstance(self.train, dict):
            self.train = section_from_dict(PhaseConfig, self.train, f"cpt.{self.phase}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, path: str | Path) -> PhaseSpec:
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))


@dataclass
class PhaseResult:
    model_dir: Path
    """Exported HF model (with tokenizer files)."""
    metrics: dict[str, Any]
    """first_loss, final_loss, steps, tokens, tokens_per_s (mean over log steps after the first),
    peak_mem_gib, mfu (None on CPU), resumed_at_steps, history (one dict per logged step)."""
    checkpoint_dir: Path
    tensorboard_dir: Path


# ---------------------------------------------------------------------------
# Helpers used by the worker
# ---------------------------------------------------------------------------


class BlockStream:
    """Deterministic, resumable stream of packed blocks, each rank reading its own rows.

    The global stream is the concatenation of per-epoch permutations of all blocks
    (``randperm`` seeded with ``seed + epoch``), so epochs cycle when ``max_steps`` needs
    more data. Each call takes the next ``world_size x batch_size`` global positions;
    rank r reads the r-th ``batch_size`` of them. ``position`` (global sequences consumed)
    is the whole state, independent of the world size.
    """

    def __init__(self, blocks, *, batch_size: int, rank: int, world_size: int, seed: int, position: int = 0):
        self.blocks = blocks  # (N, T), numpy memmap or tensor
        self.num_blocks = int(blocks.shape[0])
        assert self.num_blocks > 0, "no blocks to train on"
        self.batch_size, self.rank, self.world_size, self.seed = batch_size, rank, world_size, seed
        self.position = position
        self._perm_epoch, self._perm = -1, None

    def _order(self, epoch: int):
        import torch

        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed + epoch)
            self._perm, self._perm_epoch = torch.randperm(self.num_blocks, generator=g), epoch
        return self._perm

    def next_batch(self):
        import numpy as np
        import torch

        start = self.position + self.rank * self.batch_size
        rows = []
        for i in range(start, start + self.batch_size):
            epoch, j = divmod(i, self.num_blocks)
            rows.append(int(self._order(epoch)[j]))
        self.position += self.world_size * self.batch_size
        batch = np.stack([np.asarray(self.blocks[r]) for r in rows])
        return torch.from_numpy(batch.astype(np.int64))  # (B, T)

    @property
    def epoch(self) -> float:
        return self.position / self.num_blocks

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.position = int(state["position"])


def load_training_blocks(blocks_path: str | Path):
    """(num_blocks, block_size) int32 memory map written by azllm.data.packing.pack_corpus."""
    from azllm.data.packing import load_blocks

    path = Path(blocks_path)
    if not path.exists():
        raise FileNotFoundError(f"packed blocks {path} do not exist; they are made by "
                                "azllm.data.packing.pack_corpus (flow step cpt_embeddings/cpt_full)")
    blocks = load_blocks(path)
    assert blocks.ndim == 2 and blocks.shape[0] > 0, f"{path}: expected (num_blocks, block_size), got {blocks.shape}"
    return blocks


def freeze_for_phase(model, phase: str) -> list[str]:
    """Set requires_grad for the phase; returns the names of trainable parameters.

    ``embeddings``: only the input embeddings and, when it is not tied to them, the lm_head.
    """
    if phase == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        for p in model.parameters():
            p.requires_grad_(False)
        model.get_input_embeddings().weight.requires_grad_(True)
        head = model.get_output_embeddings()
        if head is not None:
            head.weight.requires_grad_(True)  # same Parameter when tied
    return [n for n, p in model.named_parameters() if p.requires_grad]


def decoder_layers(model) -> list:
    """The transformer blocks (each becomes one FSDP unit): ``model.model.layers`` for Llama-likes."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    assert layers is not None and len(layers) > 0, (
        f"{type(model).__name__} has no model.layers; add its block list to decoder_layers()")
    return list(layers)


def flops_per_token(num_params: int, num_layers: int, seq_len: int, hidden: int) -> int:
    """Training FLOPs per token (DESIGN section 6): 6N for the matmuls + 6 L T H for attention."""
    return 6 * num_params + 6 * num_layers * seq_len * hidden


def peak_flops(device) -> float | None:
    """bf16 dense peak FLOP/s of one accelerator, or None (CPU, unknown GPU)."""
    import torch

    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device).upper()
    for key, value in PEAK_FLOPS_BF16.items():
        if key in name:
            return value
    return None


def _peak_mem_gib(device) -> float:
    """Peak CUDA memory allocated, or on CPU the process's peak RSS."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def export_model(model, out_dir: Path, model_dir: Path, *, rank: int) -> None:
    """Collective: gather the full state dict; rank 0 writes an HF directory + tokenizer files."""
    import torch
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
    )
    from transformers import AutoModelForCausalLM

    full_sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank != 0:
        return
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(model.config, dtype=torch.float32)
    fresh.load_state_dict(full_sd, strict=False, assign=True)
    if getattr(fresh.config, "tie_word_embeddings", False):
        fresh.tie_weights()
    missing = [n for n, p in fresh.named_parameters() if p.is_meta]
    assert not missing, f"export: parameters missing from the gathered state dict: {missing[:5]}"
    out_dir.mkdir(parents=True, exist_ok=True)
    fresh.save_pretrained(out_dir, safe_serialization=True)
    for name in TOKENIZER_FILES:
        src = model_dir / name
        if src.is_file():
            shutil.copy2(src, out_dir / name)


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


# ---------------------------------------------------------------------------
# Worker
# ---------------------------------------------------------------------------


def train(spec: PhaseSpec) -> None:
    import numpy as np
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    from torch.distributed.tensor import DTensor
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    from azllm.model.kernels import apply_liger
    from azllm.model.load import load_model
    from azllm.train import checkpointing

    tc = spec.train
    out_dir, ckpt_dir = Path(spec.out_dir), Path(spec.checkpoint_dir)
    metrics_path = Path(spec.metrics_path)
    blocks = load_training_blocks(spec.blocks_path)  # fail before the process group exists

    # -----------------------------------------------------------------------
    # Distributed init: torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; alone, be rank 0 of 1
    if "RANK" not in os.environ:
        from azllm.train.launcher import free_port

        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(free_port()))
    use_cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    master = rank == 0
    writer = None
    try:
        torch.manual_seed(spec.seed)
        np.random.seed(spec.seed)
        bf16 = use_cuda and torch.cuda.is_bf16_supported() and spec.mixed_precision in ("auto", "bf16")
        if spec.mixed_precision == "bf16" and not bf16 and master:
            print("[cpt] mixed_precision=bf16 needs a CUDA GPU with bf16; training in fp32")

        # -------------------------------------------------------------------
        # Model
        model = load_model(spec.model_dir, dtype="float32")  # fp32 master weights
        liger = apply_liger(model, enabled=spec.liger)  # no-op without CUDA
        trainable = freeze_for_phase(model, spec.phase)
        num_params = sum(p.numel() for p in model.parameters())
        num_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        cfg = model.config
        vocab_size = model.get_input_embeddings().weight.shape[0]
        tied = model.get_output_embeddings() is not None and (
            model.get_output_embeddings().weight is model.get_input_embeddings().weight)

        # -------------------------------------------------------------------
        # FSDP2: each decoder layer is a unit, the root takes embeddings, norm and head.
        # bf16 compute with fp32 gradient reduction (torchtitan's default) on GPU.
        # The model stays on CPU until here: fully_shard moves each unit to the mesh device
        # and shards it, so a GPU never holds the whole fp32 model.
        mesh = init_device_mesh(device.type, (world_size,))
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 \
            else MixedPrecisionPolicy()
        for layer in decoder_layers(model):
            fully_shard(layer, mesh=mesh, mp_policy=mp)
        fully_shard(model, mesh=mesh, mp_policy=mp)
        params_are_dtensors = all(isinstance(p, DTensor) for p in model.parameters())
        local_numel = sum(p.to_local().numel() if isinstance(p, DTensor) else p.numel()
                          for p in model.parameters())

        # -------------------------------------------------------------------
        # Optimizer and schedule: AdamW on trainable parameters; no decay on 1-D (norms, biases)
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": tc.weight_decay},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=tc.lr, betas=(0.9, 0.95),
                                      eps=1e-8, fused=use_cuda)
        scheduler = get_cosine_with_min_lr_schedule_with_warmup(
            optimizer, num_warmup_steps=tc.warmup_steps, num_training_steps=tc.max_steps,
            min_lr_rate=tc.min_lr_ratio)

        # -------------------------------------------------------------------
        # Data
        stream = BlockStream(blocks, batch_size=tc.micro_batch_size, rank=rank, world_size=world_size,
                             seed=spec.seed)
        seq_len = int(blocks.shape[1])
        tokens_per_step = tc.micro_batch_size * seq_len * tc.grad_accum_steps * world_size
        fpt = flops_per_token(num_params, cfg.num_hidden_layers, seq_len, cfg.hidden_size)
        peak = peak_flops(device)

        # -------------------------------------------------------------------
        # Resume
        start_step = 0
        resumed_from = checkpointing.agreed_latest_checkpoint(ckpt_dir, device=device)
        if resumed_from is not None:
            state = checkpointing.load_checkpoint(resumed_from, model=model, optimizer=optimizer)
            scheduler.load_state_dict(state["scheduler"])
            stream.load_state_dict(state["data"])
            start_step = int(state["step"])

        if master:
            metrics_path.parent.mkdir(parents=True, exist_ok=True)
            info = {"event": "start", "phase": spec.phase, "world_size": world_size,
                    "device": str(device), "backend": dist.get_backend(), "bf16": bf16, "liger": liger,
                    "num_params": num_params, "num_trainable_params": num_trainable,
                    "trainable": trainable, "tied_embeddings": tied,
                    "params_are_dtensors": params_are_dtensors, "local_numel_rank0": local_numel,
                    "num_blocks": stream.num_blocks, "block_size": seq_len,
                    "tokens_per_step": tokens_per_step, "flops_per_token": fpt,
                    "max_steps": tc.max_steps, "start_step": start_step + 1,
                    "resumed_from": str(resumed_from) if resumed_from else None}
            print(f"[cpt] {json.dumps({k: v for k, v in info.items() if k != 'trainable'})}", flush=True)
            print(f"[cpt] phase={spec.phase} trainable={num_trainable:,}/{num_params:,} params; "
                  f"{tokens_per_step:,} tokens/step = {tc.micro_batch_size} seqs x {seq_len} x "
                  f"{tc.grad_accum_steps} accum x {world_size} ranks; "
                  f"{tokens_per_step * tc.max_steps / (stream.num_blocks * seq_len):.2f} epochs",
                  flush=True)
            if resumed_from is not None:
                print(f"[cpt] resuming from {resumed_from} at step {start_step + 1}", flush=True)
                _append_jsonl(metrics_path, {"event": "resume", "from_checkpoint": str(resumed_from),
                                             "resume_step": start_step + 1})
            _append_jsonl(metrics_path, info)
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(spec.tensorboard_dir)

        # -------------------------------------------------------------------
        # Loop
        model.train()
        if use_cuda:
            torch.cuda.reset_peak_memory_stats(device)
        last_log_time, last_log_step = time.perf_counter(), start_step
        t_start = last_log_time
        for step in range(start_step + 1, tc.max_steps + 1):
            loss_sum = torch.zeros((), device=device)
            for _ in range(tc.grad_accum_steps):
                x = stream.next_batch()  # (B, T), on CPU: this check costs no device sync
                assert int(x.max()) < vocab_size, (
                    f"token id {int(x.max())} >= model vocab {vocab_size}: {spec.blocks_path} was packed "
                    f"with another tokenizer than {spec.model_dir}'s")
                x = x.to(device, non_blocking=True)
                loss = model(input_ids=x, labels=x).loss / tc.grad_accum_steps
                loss.backward()
                loss_sum += loss.detach()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, tc.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

            if step % tc.log_every_steps == 0 or step == tc.max_steps or step == start_step + 1:
                dist.all_reduce(loss_sum)  # gloo has no AVG: sum, then divide
                loss_value = loss_sum.item() / world_size  # host sync: log steps only
                if isinstance(grad_norm, DTensor):
                    grad_norm = grad_norm.full_tensor()
                now = time.perf_counter()
                tokens_per_s = tokens_per_step * (step - last_log_step) / (now - last_log_time)
                last_log_time, last_log_step = now, step
                mfu = None if peak is None else tokens_per_s / world_size * fpt / peak
                record = {"step": step, "loss": loss_value, "lr": lr, "grad_norm": float(grad_norm),
                          "tokens": step * tokens_per_step, "tokens_per_s": tokens_per_s,
                          "peak_mem_gib": _peak_mem_gib(device), "mfu": mfu, "epoch": stream.epoch,
                          "elapsed_s": now - t_start}
                if master:
                    print(f"[cpt] step {step:5d}/{tc.max_steps} loss {loss_value:.4f} lr {lr:.2e} "
                          f"gnorm {record['grad_norm']:.3f} {tokens_per_s:,.0f} tok/s "
                          f"mem {record['peak_mem_gib']:.2f} GiB"
                          + (f" mfu {mfu:.1%}" if mfu is not None else ""), flush=True)
                    _append_jsonl(metrics_path, record)
                    for key in ("loss", "lr", "grad_norm", "tokens_per_s", "peak_mem_gib", "mfu"):
                        if record[key] is not None:
                            writer.add_scalar(f"{spec.phase}/{key}", record[key], step)

            if (tc.save_every_steps and step % tc.save_every_steps == 0) or step == tc.max_steps:
                t_save = time.perf_counter()
                path = checkpointing.save_checkpoint(
                    ckpt_dir, step, model=model, optimizer=optimizer,
                    trainer_state={"scheduler": scheduler.state_dict(), "data": stream.state_dict()},
                    metadata={"phase": spec.phase, "max_steps": tc.max_steps})
                if master:
                    print(f"[cpt] saved checkpoint {path}", flush=True)
                    checkpointing.register_with_metaflow(path, {"phase": spec.phase, "step": step})
                last_log_time += time.perf_counter() - t_save  # tokens/s measures training only
                if spec.fail_after_step == step:
                    raise RuntimeError(f"fail_after_step={step}: injected failure after the checkpoint")

        # -------------------------------------------------------------------
        # Export
        export_model(model, out_dir, Path(spec.model_dir), rank=rank)
        if master:
            _append_jsonl(metrics_path, {"event": "export", "out_dir": str(out_dir)})
            print(f"[cpt] exported {out_dir}", flush=True)
        dist.barrier()
    finally:
        if writer is not None:
            writer.close()
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One CPT phase (torchrun worker).")
    parser.add_argument("--spec", required=True, help="PhaseSpec JSON written by run_cpt_phase")
    args = parser.parse_args(argv)
    train(PhaseSpec.from_json(args.spec))


# ---------------------------------------------------------------------------
# Flow-side API
# ---------------------------------------------------------------------------


METRICS_FILE = "metrics.jsonl"
"""Under a phase's work dir: one JSON line per logged step, plus `event` lines (start, resume); rank 0 writes it."""


def read_metrics_records(metrics_path: str | Path) -> list[dict[str, Any]]:
    """Every complete line of a metrics file; a line being written right now is skipped, so the
    file can be read while the workers append to it (the live card does)."""
    path = Path(metrics_path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def step_history(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-step records in step order; after a resume the last record of a step wins."""
    by_step = {rec["step"]: rec for rec in records if "step" in rec and "loss" in rec and "event" not in rec}
    return [by_step[s] for s in sorted(by_step)]


def read_metrics(metrics_path: str | Path) -> dict[str, Any]:
    """Summarise a metrics JSONL: per-step history (last record per step wins) + headline numbers."""
    records = read_metrics_records(metrics_path)
    resumes = [rec["resume_step"] for rec in records if rec.get("event") == "resume"]
    start = next((rec for rec in reversed(records) if rec.get("event") == "start"), {})
    history = step_history(records)
    if not history:
        return {"history": [], "steps": 0, "resumed_at_steps": resumes}
    last = history[-1]
    rates = [h["tokens_per_s"] for h in history[1:]] or [history[0]["tokens_per_s"]]  # step 1 warms up
    mfus = [h["mfu"] for h in history if h["mfu"] is not None]
    return {"first_loss": history[0]["loss"], "final_loss": last["loss"], "steps": last["step"],
            "tokens": last["tokens"], "tokens_per_s": sum(rates) / len(rates),
            "peak_mem_gib": max(h["peak_mem_gib"] for h in history),
            "mfu": sum(mfus) / len(mfus) if mfus else None,
            "num_params": start.get("num_params"), "num_trainable_params": start.get("num_trainable_params"),
            "world_size": start.get("world_size"), "params_are_dtensors": start.get("params_are_dtensors"),
            "local_numel_rank0": start.get("local_numel_rank0"),
            "resumed_at_steps": resumes, "history": history}


def run_cpt_phase(cfg: CptConfig, *, phase: str, model_dir: Path, blocks_path: Path, out_dir: Path,
                  work_dir: Path, nproc_per_node: int, nnodes: int = 1, node_rank: int = 0,
                  master_addr: str = "127.0.0.1", master_port: int | None = None,
                  fail_after_step: int | None = None, resume_from: Path | None = None) -> PhaseResult:
    """Run one CPT phase in torchrun workers; returns the exported model and its metrics.

    ``work_dir`` holds spec.json, checkpoints/ (rerunning with the same work_dir resumes
    from the latest complete checkpoint), tensorboard/, metrics.jsonl and worker.log.
    ``resume_from``: a checkpoint directory restored by Metaflow (see
    :func:`azllm.train.checkpointing.loaded_checkpoint_for_this_run`), copied into
    checkpoints/ first; a newer local checkpoint still wins.
    """
    from azllm.train.checkpointing import restore_checkpoint
    from azllm.train.launcher import run_torchrun, torchrun_command

    if phase not in PHASES:
        raise ValueError(f"phase={phase!r}; accepted: {list(PHASES)}")
    model_dir, blocks_path, out_dir, work_dir = map(Path, (model_dir, blocks_path, out_dir, work_dir))
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not an HF model directory (no config.json); "
                                "the previous step (load/adapt vocabulary or phase 1) makes it")
    if not blocks_path.exists():
        raise FileNotFoundError(f"packed blocks {blocks_path} do not exist; they are made by "
                                "azllm.data.packing.pack_corpus (did packing run for this arm?)")
    work_dir.mkdir(parents=True, exist_ok=True)
    if resume_from is not None:
        print(f"[cpt] restored {restore_checkpoint(resume_from, work_dir / 'checkpoints')}", flush=True)
    spec = PhaseSpec(phase=phase, train=getattr(cfg, phase), model_dir=str(model_dir.resolve()),
                     blocks_path=str(blocks_path.resolve()), out_dir=str(out_dir.resolve()),
                     checkpoint_dir=str((work_dir / "checkpoints").resolve()),
                     tensorboard_dir=str((work_dir / "tensorboard").resolve()),
                     metrics_path=str((work_dir / METRICS_FILE).resolve()),
                     mixed_precision=cfg.mixed_precision, liger=cfg.liger, seed=cfg.seed,
                     fail_after_step=fail_after_step)
    spec_path = work_dir / "spec.json"
    spec_path.write_text(spec.to_json(), encoding="utf-8")
    cmd = torchrun_command("azllm.train.cpt", ["--spec", str(spec_path)], nproc_per_node=nproc_per_node,
                           nnodes=nnodes, node_rank=node_rank, master_addr=master_addr,
                           master_port=master_port)
    print(f"[cpt] launching: {' '.join(cmd)}", flush=True)
    run_torchrun(cmd, work_dir / "worker.log")
    if node_rank == 0 and not (out_dir / "config.json").is_file():
        raise RuntimeError(f"workers exited cleanly but wrote no model to {out_dir}; see {work_dir / 'worker.log'}")
    metrics = read_metrics(spec.metrics_path)  # written by global rank 0 only (node_rank 0)
    return PhaseResult(model_dir=out_dir, metrics=metrics,
                       checkpoint_dir=Path(spec.checkpoint_dir), tensorboard_dir=Path(spec.tensorboard_dir))


if __name__ == "__main__":
    main(sys.argv[1:])
