"""What the CPT launcher and its torchrun workers share: the phase's spec, torchrun's layout, the result.

:func:`azllm.train.launcher.run_cpt_phase` writes a :class:`PhaseSpec` as ``spec.json`` and
starts :mod:`azllm.train.cpt_worker` under torchrun with a :class:`TorchrunLayout`; the worker
reads the spec back. Both import this module and neither imports the other (docs/DESIGN.md §6).
The spec carries the preset's sections whole: the phase's ``[cpt.embeddings]``/``[cpt.full]``
(:class:`~azllm.config.PhaseConfig`, ``hparams``) and ``[cpt.runtime]``
(:class:`~azllm.config.CptRuntime`, ``runtime``), so a new runtime knob is one field in
``CptRuntime`` and its use in the worker.
"""

from __future__ import annotations

import json
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from azllm.config import CptRuntime, PhaseConfig, section_from_dict

PHASES = ("embeddings", "full")
"""``embeddings`` (phase 1: input embeddings and head, optionally the outer layers) and ``full``."""

DEFAULT_MASTER_PORT = 29500
"""Rendezvous port on the main node for multi-node runs (torchrun's own default)."""


def free_port() -> int:
    """A TCP port free right now on this host (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True, kw_only=True)
class TorchrunLayout:
    """torchrun's view of one node (``azllm.compute.distributed.torchrun_layout`` in a flow step)."""

    nproc_per_node: int
    """Training processes on this node: one per GPU, else ``[compute] nproc_per_node``."""
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int | None = None
    """None on one node (``--standalone`` picks a port); on several nodes None means 29500."""

    def __post_init__(self) -> None:
        if self.nproc_per_node < 1:
            raise ValueError(f"nproc_per_node must be >= 1, got {self.nproc_per_node}")
        if self.nnodes < 1 or not 0 <= self.node_rank < self.nnodes:
            raise ValueError(f"need nnodes >= 1 and 0 <= node_rank < nnodes, got nnodes={self.nnodes} "
                             f"node_rank={self.node_rank}")

    @property
    def is_main_node(self) -> bool:
        """Node 0 exports the model and stores the step's artifacts that matter."""
        return self.node_rank == 0


@dataclass(frozen=True, kw_only=True)
class PhaseSpec:
    """Everything one CPT phase's workers need, resolved; written to and read from ``spec.json``."""

    phase: str
    """`embeddings` (input embeddings + untied head, plus the outer layers with ``embeddings+outer:K``) or `full`."""
    hparams: PhaseConfig
    """The phase's section, ``[cpt.embeddings]`` or ``[cpt.full]`` (its steps set by the budget)."""
    runtime: CptRuntime
    """``[cpt.runtime]``: kernels, precision, activation checkpointing, compile, sharding, seed ..."""
    model_dir: str
    """HF model directory to start from (its tokenizer files are copied to the export)."""
    blocks_path: str
    """Packed token blocks (num_blocks, block_size), from azllm.data.packing.pack_corpus."""
    out_dir: str
    """Final HF model directory (safetensors)."""
    checkpoint_dir: str
    """Sharded DCP checkpoints, step-XXXXXX/; the latest complete one is resumed at start."""
    tensorboard_dir: str
    """SummaryWriter logs (rank 0): <phase>/loss, lr, grad_norm, tokens_per_s, peak_mem_gib, mfu, lr_<group>."""
    metrics_path: str
    """JSON lines: one record per log step plus `event` records (start, resume, checkpoint, export)."""
    save_outputs: bool = True
    """Save checkpoints (every ``save_every_steps`` and the last step) and export the final HF model.
    False turns off both, every checkpoint included: benchmarks measuring training alone."""
    attn_implementation: str = "sdpa"
    """``[model] attn_implementation``: the attention the worker builds its model with."""
    checkpoint_store: str | None = None
    """Several nodes without a shared filesystem: ``s3://bucket/prefix`` or a directory where every
    rank uploads its checkpoint files (azllm.train.checkpointing.CheckpointStore); None: checkpoints
    stay in ``checkpoint_dir`` (one node, or a filesystem every node mounts)."""
    resume_checkpoint: str | None = None
    """The checkpoint to resume, chosen and verified by the launcher on this node (None: step 1)."""

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"phase={self.phase!r}; accepted: {list(PHASES)}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, path: str | Path) -> PhaseSpec:
        """The spec in ``path``, its sections rebuilt (and checked) as the preset's dataclasses."""
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        raw["hparams"] = section_from_dict(PhaseConfig, raw["hparams"], f"cpt.{raw.get('phase')}")
        raw["runtime"] = section_from_dict(CptRuntime, raw["runtime"], "cpt.runtime")
        return cls(**raw)


@dataclass(frozen=True, kw_only=True)
class PhaseResult:
    """One CPT phase's outcome, from the launcher, the arm's stage and ``azllm cpt`` alike."""

    model_dir: Path
    """Exported HF model (with tokenizer files); for baseline's pass-through phase 1, the adapted model."""
    metrics: dict[str, Any]
    """first_loss, final_loss, steps, tokens, tokens_per_s (mean over log steps after the first),
    peak_mem_gib, mfu (None on CPU), resumed_at_steps, history (one dict per logged step);
    wall_s, device_hours and gpu_hours of this launch (azllm.train.launcher.device_hours); from
    the arm's stage also packed, tokens_seen, bytes_seen (and vocab for phase 1)."""
    checkpoint_dir: Path | None = None
    """The phase's sharded checkpoints (None for a pass-through: no training ran)."""
    tensorboard_dir: Path | None = None
    """The phase's TensorBoard event files (written by global rank 0; None for a pass-through)."""
