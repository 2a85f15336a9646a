"""The CPT stage of one arm, as the flow's `cpt_embeddings` and `cpt_full` steps run it.

An arm is a vocabulary strategy (baseline | extend | replace). Phase 1 adapts the
base model to the arm's tokenizer (new rows by FVT) and trains the embeddings and head (and,
with `train = "embeddings+outer:K"`, the outer decoder layers);
the baseline arm has no new Azerbaijani tokens, so its phase 1 is a pass-through
(it only gains rows for chat special tokens its base may lack). Phase 2 trains
everything. Each phase's steps follow `[cpt] budget` (azllm.train.budget), derived here before
torchrun starts; its metrics record tokens_seen, bytes_seen and device/GPU-hours. Training
itself runs in torchrun workers (`azllm.train.cpt_worker`, docs/DESIGN.md §6).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from azllm.config import CptConfig, ModelConfig, PipelineConfig
from azllm.train.budget import PhaseBudget, plan_phase
from azllm.train.launcher import TorchrunLayout, check_outer_layers, run_cpt_phase, training_processes_per_node
from azllm.train.metrics import METRICS_FILE


@dataclass
class ArmPhaseResult:
    model_dir: Path
    """A Hugging Face model directory, tokenizer files included."""
    metrics: dict = field(default_factory=dict)
    tensorboard_dir: Path | None = None
    """The phase's TensorBoard event files (written by global rank 0; None for a pass-through)."""


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
               resume_from: Path | None, fail_after_step: int | None,
               layout: TorchrunLayout | None) -> ArmPhaseResult:
    from azllm.data.packing import pack_corpus

    packed = pack_corpus(data_dir / "train.jsonl", model_dir, block_size=cfg.cpt.block_size,
                         num_proc=cfg.cpt.tokenize_num_proc)
    budget = phase_budget(cfg, phase, train_path=data_dir / "train.jsonl", arm_tokens=packed.num_tokens,
                          corpus_bytes=packed.num_bytes)
    print(budget.describe(phase), flush=True)
    cpt_cfg = dataclasses.replace(cfg.cpt, **{phase: budget.apply(getattr(cfg.cpt, phase))})
    if layout is None:  # one node, processes from the hardware
        layout = TorchrunLayout(nproc_per_node=training_processes_per_node(0, cfg.compute.nproc_per_node))
    result = run_cpt_phase(cpt_cfg, phase=phase, model_dir=model_dir, blocks_path=packed.path,
                           out_dir=out_dir / "model", work_dir=phase_work_dir(out_dir),
                           resume_from=resume_from, fail_after_step=fail_after_step, **layout.as_kwargs())
    metrics = dict(result.metrics)
    metrics["packed"] = {"blocks": packed.num_blocks, "tokens": packed.num_tokens}
    metrics.update(budget.seen(int(metrics.get("tokens", 0))))
    return ArmPhaseResult(model_dir=result.model_dir, metrics=metrics, tensorboard_dir=result.tensorboard_dir)


def phase_budget(cfg: PipelineConfig, phase: str, *, train_path: Path, arm_tokens: int,
                 corpus_bytes: int) -> PhaseBudget:
    """This arm's steps for `phase` under `[cpt] budget` (azllm.train.budget). For `bytes` the
    corpus is also packed with the base model's tokenizer, the baseline arm's (cached by
    pack_corpus, so once per host and corpus)."""
    reference_tokens = None
    if cfg.cpt.budget == "bytes":
        from azllm.data.packing import pack_corpus
        from azllm.model.load import materialize_base_model

        reference = pack_corpus(train_path, materialize_base_model(cfg.model), block_size=cfg.cpt.block_size,
                                num_proc=cfg.cpt.tokenize_num_proc)
        reference_tokens = reference.num_tokens
    return plan_phase(getattr(cfg.cpt, phase), cfg.cpt.budget, corpus_bytes=corpus_bytes,
                      arm_tokens=arm_tokens, reference_tokens=reference_tokens)


def phase_work_dir(out_dir: Path) -> Path:
    """The workers' spec, checkpoints, TensorBoard events and metrics of a phase run in `out_dir`."""
    return Path(out_dir) / "work"


def metrics_path(out_dir: Path) -> Path:
    """Where the workers of a phase run in `out_dir` append one JSON line per logged step
    (rank 0 only): what a live card follows."""
    return phase_work_dir(out_dir) / METRICS_FILE


def train_embeddings_phase(cfg: PipelineConfig, *, arm: str, tokenizer_dir: Path, data_dir: Path, out_dir: Path,
                           resume_from: Path | None = None, fail_after_step: int | None = None,
                           layout: TorchrunLayout | None = None) -> ArmPhaseResult:
    """Phase 1 of `arm`: vocabulary adaptation, then embeddings-only training (not for baseline).

    `resume_from`: a checkpoint restored by Metaflow's `@checkpoint` (this run's lineage only).
    `layout`: this node's place in a multi-node gang (`@parallel`); None = one node. Every node
    adapts the vocabulary itself (the workers read the model from local disk).
    """
    from azllm.model.load import materialize_base_model

    check_outer_layers(cfg.cpt.embeddings, materialize_base_model(cfg.model))  # before minutes of adaptation
    adapted = out_dir / "adapted"
    vocab_stats = adapt_base_model(cfg.model, cfg.cpt, tokenizer_dir=tokenizer_dir, out_dir=adapted)
    if arm == "baseline":
        skipped = {"skipped": True, "budget": cfg.cpt.budget, "tokens_seen": 0, "bytes_seen": 0,
                   "device_hours": 0.0, "gpu_hours": 0.0}
        return ArmPhaseResult(model_dir=adapted, metrics={**skipped, "vocab": vocab_stats})
    result = _run_phase(cfg, "embeddings", model_dir=adapted, data_dir=data_dir, out_dir=out_dir,
                        resume_from=resume_from, fail_after_step=fail_after_step, layout=layout)
    result.metrics["vocab"] = vocab_stats
    return result


def train_full_phase(cfg: PipelineConfig, *, init_dir: Path, data_dir: Path, out_dir: Path,
                     resume_from: Path | None = None, fail_after_step: int | None = None,
                     layout: TorchrunLayout | None = None) -> ArmPhaseResult:
    """Phase 2: every parameter, from the phase-1 model (`layout` as in phase 1)."""
    return _run_phase(cfg, "full", model_dir=init_dir, data_dir=data_dir, out_dir=out_dir,
                      resume_from=resume_from, fail_after_step=fail_after_step, layout=layout)
