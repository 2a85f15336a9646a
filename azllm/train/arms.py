"""The CPT stage of one arm, as the flow's `cpt_embeddings` and `cpt_full` steps run it.

An arm is a vocabulary strategy (baseline | extend | replace). Phase 1 adapts the
base model to the arm's tokenizer (new rows by FVT) and trains the embeddings only;
the baseline arm has no new Azerbaijani tokens, so its phase 1 is a pass-through
(it only gains rows for chat special tokens its base may lack). Phase 2 trains
everything. Training itself runs in torchrun workers (`azllm.train.cpt`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from azllm.config import CptConfig, ModelConfig, PipelineConfig


@dataclass
class ArmPhaseResult:
    model_dir: Path
    """A Hugging Face model directory, tokenizer files included."""
    metrics: dict = field(default_factory=dict)


def adapt_base_model(model_cfg: ModelConfig, cpt_cfg: CptConfig, *, tokenizer_dir: Path, out_dir: Path) -> dict:
    """Save the base model with its vocabulary adapted to `tokenizer_dir` into `out_dir`."""
    from transformers import AutoTokenizer

    from azllm.model.load import load_model, materialize_base_model
    from azllm.model.vocab import adapt_vocabulary

    base_dir = materialize_base_model(model_cfg)
    base_tokenizer = AutoTokenizer.from_pretrained(base_dir)
    new_tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = load_model(base_dir, dtype="float32", attn_implementation=model_cfg.attn_implementation)
    stats = adapt_vocabulary(model, base_tokenizer, new_tokenizer, init=cpt_cfg.init,
                             pad_to_multiple_of=cpt_cfg.pad_to_multiple_of, seed=cpt_cfg.seed)
    model.save_pretrained(out_dir)
    new_tokenizer.save_pretrained(out_dir)
    return stats


def _run_phase(cfg: PipelineConfig, phase: str, *, model_dir: Path, data_dir: Path, out_dir: Path,
               checkpoint_dir: Path | None, on_checkpoint: Callable[[Path], None] | None) -> ArmPhaseResult:
    from azllm.compute.hardware import training_processes_per_node
    from azllm.data.packing import pack_corpus
    from azllm.train.checkpointing import latest_checkpoint
    from azllm.train.cpt import run_cpt_phase

    packed = pack_corpus(data_dir / "train.jsonl", model_dir, block_size=cfg.cpt.block_size,
                         num_proc=cfg.cpt.tokenize_num_proc)
    work_dir = out_dir / "work"
    ckpt_dir = checkpoint_dir or (work_dir / "checkpoints")
    try:
        result = run_cpt_phase(cfg.cpt, phase=phase, model_dir=model_dir, blocks_path=packed.path,
                               out_dir=out_dir / "model", work_dir=work_dir, checkpoint_dir=ckpt_dir,
                               nproc_per_node=training_processes_per_node(0, cfg.compute.nproc_per_node))
    except BaseException:
        # Keep what the workers saved before failing: a retry or `resume` continues from it.
        if on_checkpoint is not None and latest_checkpoint(ckpt_dir) is not None:
            on_checkpoint(ckpt_dir)
        raise
    metrics = dict(result.metrics)
    metrics["packed"] = {"blocks": packed.num_blocks, "tokens": packed.num_tokens}
    return ArmPhaseResult(model_dir=result.model_dir, metrics=metrics)


def train_embeddings_phase(cfg: PipelineConfig, *, arm: str, tokenizer_dir: Path, data_dir: Path, out_dir: Path,
                           checkpoint_dir: Path | None = None,
                           on_checkpoint: Callable[[Path], None] | None = None) -> ArmPhaseResult:
    """Phase 1 of `arm`: vocabulary adaptation, then embeddings-only training (not for baseline)."""
    adapted = out_dir / "adapted"
    vocab_stats = adapt_base_model(cfg.model, cfg.cpt, tokenizer_dir=tokenizer_dir, out_dir=adapted)
    if arm == "baseline":
        return ArmPhaseResult(model_dir=adapted, metrics={"skipped": True, "vocab": vocab_stats})
    result = _run_phase(cfg, "embeddings", model_dir=adapted, data_dir=data_dir, out_dir=out_dir,
                        checkpoint_dir=checkpoint_dir, on_checkpoint=on_checkpoint)
    result.metrics["vocab"] = vocab_stats
    return result


def train_full_phase(cfg: PipelineConfig, *, init_dir: Path, data_dir: Path, out_dir: Path,
                     checkpoint_dir: Path | None = None,
                     on_checkpoint: Callable[[Path], None] | None = None) -> ArmPhaseResult:
    """Phase 2: every parameter, from the phase-1 model."""
    return _run_phase(cfg, "full", model_dir=init_dir, data_dir=data_dir, out_dir=out_dir,
                      checkpoint_dir=checkpoint_dir, on_checkpoint=on_checkpoint)
