"""The CPT stage of one arm, as the flow's `pack_arm`, `cpt_embeddings` and `cpt_full` steps run it.

An arm is a vocabulary strategy (baseline | extend | replace). Phase 1 adapts the
base model to the arm's tokenizer (new rows by FVT) and trains the embeddings and head (and,
with `train = "embeddings+outer:K"`, the outer decoder layers);
the baseline arm has no new Azerbaijani tokens, so its phase 1 is a pass-through
(it only gains rows for chat special tokens its base may lack). Phase 2 trains
everything. Each phase's steps follow `[cpt] budget` (azllm.train.budget), derived here before
torchrun starts from the packed corpus's counts; its metrics record tokens_seen, bytes_seen and
device/GPU-hours. The corpus is tokenized and packed once per arm on CPU (`pack_arm_corpus`, the
flow's `pack_arm` step); the phases read only those blocks (`ArmCorpus`). Training itself runs in
torchrun workers (`azllm.train.cpt_worker`, docs/DESIGN.md §6).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from azllm.config import CptConfig, ModelConfig, PipelineConfig
from azllm.data.layout import PreparedData
from azllm.data.packing import PackedData, pack_corpus, read_packed
from azllm.train.budget import PhaseBudget, plan_phase
from azllm.train.launcher import check_outer_layers, run_cpt_phase, training_processes_per_node
from azllm.train.metrics import METRICS_FILE
from azllm.train.phase import PhaseResult, TorchrunLayout


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
                             pad_to_multiple_of=cpt_cfg.pad_to_multiple_of, seed=cpt_cfg.runtime.seed)
    model.save_pretrained(out_dir)
    new_tokenizer.save_pretrained(out_dir)
    return stats


@dataclass(frozen=True)
class ArmCorpus:
    """An arm's training corpus packed with its tokenizer (the flow's CPU step `pack_arm`), with
    the counts the phase budget divides by: the CPT steps read these, never the raw corpus."""

    packed: PackedData
    reference_tokens: int | None = None
    """Packed tokens of the same corpus with the base model's tokenizer; `budget = "bytes"` only."""

    @property
    def directory(self) -> Path:
        """`blocks.npy` + `meta.json`: what the flow saves as the arm's `packed` reference."""
        return self.packed.path.parent

    def stats(self) -> dict:
        """A small artifact: the packed counts and the budget's reference count."""
        counts = {k: v for k, v in self.packed.to_dict().items() if k not in ("path", "from_cache")}
        return {**counts, "reference_tokens": self.reference_tokens}


def pack_arm_corpus(cfg: PipelineConfig, *, tokenizer_dir: Path, data: PreparedData) -> ArmCorpus:
    """Tokenize and pack `data`'s train.jsonl (only its corpus half is needed) with the arm's tokenizer
    into `cfg.cpt.block_size` blocks (a process pool, `[cpt] tokenize_num_proc`); for `budget = "bytes"`
    also with the base model's tokenizer, whose token count is the reference (azllm.train.budget).
    Cached by pack_corpus."""
    train_path = data.require("train").train
    packed = pack_corpus(train_path, tokenizer_dir, block_size=cfg.cpt.block_size,
                         num_proc=cfg.cpt.tokenize_num_proc)
    print(f"[pack] {train_path.name}: {packed.num_documents:,} documents, {packed.num_bytes:,} bytes -> "
          f"{packed.num_tokens:,} tokens, {packed.num_blocks:,} blocks of {packed.block_size}"
          f"{' (cached)' if packed.from_cache else ''}", flush=True)
    reference_tokens = None
    if cfg.cpt.budget == "bytes":
        from azllm.model.load import materialize_base_model

        reference = pack_corpus(train_path, materialize_base_model(cfg.model), block_size=cfg.cpt.block_size,
                                num_proc=cfg.cpt.tokenize_num_proc)
        reference_tokens = reference.num_tokens
    return ArmCorpus(packed=packed, reference_tokens=reference_tokens)


def load_arm_corpus(packed_dir: Path, stats: dict) -> ArmCorpus:
    """The ArmCorpus of a loaded `packed` reference and its `pack_stats` artifact."""
    return ArmCorpus(packed=read_packed(packed_dir), reference_tokens=stats.get("reference_tokens"))


def _run_phase(cfg: PipelineConfig, phase: str, *, model_dir: Path, corpus: ArmCorpus, out_dir: Path,
               resume_from: Path | None, layout: TorchrunLayout | None, checkpoint_store: str | None = None,
               resume_store: str | None = None) -> PhaseResult:
    packed = corpus.packed
    if packed.block_size != cfg.cpt.block_size:
        raise ValueError(f"{packed.path}: blocks of {packed.block_size} tokens but [cpt] block_size = "
                         f"{cfg.cpt.block_size}; pack the corpus again with this preset (pack_arm step)")
    budget = phase_budget(cfg, phase, corpus)
    print(budget.describe(phase), flush=True)
    cpt_cfg = dataclasses.replace(cfg.cpt, **{phase: budget.apply(getattr(cfg.cpt, phase))})
    if layout is None:  # one node, processes from the hardware
        layout = TorchrunLayout(nproc_per_node=training_processes_per_node(0, cfg.compute.nproc_per_node))
    result = run_cpt_phase(cpt_cfg, phase=phase, model_dir=model_dir, blocks_path=packed.path,
                           out_dir=out_dir / "model", work_dir=phase_work_dir(out_dir), layout=layout,
                           resume_from=resume_from, attn_implementation=cfg.model.attn_implementation,
                           checkpoint_store=checkpoint_store, resume_store=resume_store)
    metrics = dict(result.metrics)
    metrics["packed"] = {"blocks": packed.num_blocks, "tokens": packed.num_tokens}
    metrics.update(budget.seen(int(metrics.get("tokens", 0))))
    return dataclasses.replace(result, metrics=metrics)


def phase_budget(cfg: PipelineConfig, phase: str, corpus: ArmCorpus) -> PhaseBudget:
    """This arm's steps for `phase` under `[cpt] budget` (azllm.train.budget), from the packed
    counts: no corpus is read here."""
    if cfg.cpt.budget == "bytes" and corpus.reference_tokens is None:
        raise ValueError("[cpt] budget = 'bytes' needs the base tokenizer's token count of the corpus, which "
                         "this packed corpus lacks; pack it with pack_arm_corpus under this preset")
    return plan_phase(getattr(cfg.cpt, phase), cfg.cpt.budget, corpus_bytes=corpus.packed.num_bytes,
                      arm_tokens=corpus.packed.num_tokens, reference_tokens=corpus.reference_tokens)


def phase_work_dir(out_dir: Path) -> Path:
    """The workers' spec, checkpoints, TensorBoard events and metrics of a phase run in `out_dir`."""
    return Path(out_dir) / "work"


def metrics_path(out_dir: Path) -> Path:
    """Where the workers of a phase run in `out_dir` append one JSON line per logged step
    (rank 0 only): what a live card follows."""
    return phase_work_dir(out_dir) / METRICS_FILE


def train_embeddings_phase(cfg: PipelineConfig, *, arm: str, tokenizer_dir: Path, corpus: ArmCorpus, out_dir: Path,
                           resume_from: Path | None = None, layout: TorchrunLayout | None = None,
                           checkpoint_store: str | None = None, resume_store: str | None = None) -> PhaseResult:
    """Phase 1 of `arm`: vocabulary adaptation, then embeddings-only training (not for baseline).

    `resume_from`: a checkpoint restored by Metaflow's `@checkpoint` (this run's lineage only).
    `layout`: this node's place in a multi-node gang (`@parallel`); None = one node. Every node
    adapts the vocabulary itself (the workers read the model from local disk).
    `checkpoint_store`, `resume_store`: several nodes (azllm.compute.distributed.checkpoint_stores).
    """
    from azllm.model.load import materialize_base_model

    check_outer_layers(cfg.cpt.embeddings, materialize_base_model(cfg.model))  # before minutes of adaptation
    adapted = out_dir / "adapted"
    vocab_stats = adapt_base_model(cfg.model, cfg.cpt, tokenizer_dir=tokenizer_dir, out_dir=adapted)
    if arm == "baseline":
        skipped = {"skipped": True, "budget": cfg.cpt.budget, "tokens_seen": 0, "bytes_seen": 0,
                   "device_hours": 0.0, "gpu_hours": 0.0}
        return PhaseResult(model_dir=adapted, metrics={**skipped, "vocab": vocab_stats})
    result = _run_phase(cfg, "embeddings", model_dir=adapted, corpus=corpus, out_dir=out_dir,
                        resume_from=resume_from, layout=layout,
                        checkpoint_store=checkpoint_store, resume_store=resume_store)
    result.metrics["vocab"] = vocab_stats
    return result


def train_full_phase(cfg: PipelineConfig, *, init_dir: Path, corpus: ArmCorpus, out_dir: Path,
                     resume_from: Path | None = None, layout: TorchrunLayout | None = None,
                     checkpoint_store: str | None = None, resume_store: str | None = None) -> PhaseResult:
    """Phase 2: every parameter, from the phase-1 model (`layout` and the stores as in phase 1)."""
    return _run_phase(cfg, "full", model_dir=init_dir, corpus=corpus, out_dir=out_dir,
                      resume_from=resume_from, layout=layout,
                      checkpoint_store=checkpoint_store, resume_store=resume_store)
