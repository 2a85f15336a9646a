"""Base vs CPT vs SFT (vs preference) side by side: BPB per file, repetition of fixed-prompt generations, chrF.

The flow's `evaluate` step makes one call:

    >>> report = evaluate_models(cfg.eval, models={
    ...     "base": ModelSpec(model_dir=base_dir, tokenizer_dir=base_dir),
    ...     "cpt": ModelSpec(model_dir=cpt_dir, tokenizer_dir=tok_dir),
    ...     "sft": ModelSpec(model_dir=cpt_dir, tokenizer_dir=tok_dir, adapter_dir=adapter_dir, chat=True)},
    ...     files={"validation": val_path, "other_domain": news_path},
    ...     sft_validation=sft_val_path, out_dir=Path("runs/eval"))
    >>> report.tables["bpb"]

Writes `metrics.json`, `generations.jsonl` and one CSV per table to `out_dir` (the cards draw the charts).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azllm.config import EvalConfig
from azllm.model.device import Placement

logger = logging.getLogger(__name__)


@dataclass
class ModelSpec:
    model_dir: Path
    tokenizer_dir: Path
    adapter_dir: Path | None = None
    """A PEFT LoRA adapter applied on top of `model_dir`."""
    chat: bool = False
    """Prompt through the chat template (user turn + assistant header)."""


@dataclass
class EvalReport:
    metrics: dict[str, dict[str, Any]]
    """{model: {"bpb": {file: value}, "repetition": {...}, "chrf": float | None, "assistant_loss": float | None,
    "azerbaijani_share": share of the chat answers language ID calls Azerbaijani, "answer_repeated_4gram_share"}}"""
    tables: dict[str, Any] = field(default_factory=dict)
    """pandas DataFrames: `bpb` (model x file), `repetition` (model x measure), `sft` (model x chrf, loss)."""
    generations: list[dict[str, str]] = field(default_factory=list)
    """{"model", "prompt", "text"} for every fixed prompt (and every answered question, kind "qa")."""
    task_scores: list[dict[str, Any]] = field(default_factory=list)
    """`[eval] tasks` rows (azllm.eval.tasks.SCORE_COLUMNS) of every model; empty without tasks."""


def evaluate_models(cfg: EvalConfig, *, models: dict[str, ModelSpec], files: dict[str, Path],
                    sft_validation: Path | None, out_dir: Path, placement: Placement | None = None) -> EvalReport:
    """Score every model on the same files and prompts; see the module docstring.

    Each model is loaded on `placement` (default: the hardware's choice, `select_placement`),
    one at a time, and BPB and the assistant loss score `cfg.batch_size` sequences per pass."""
    import pandas as pd

    from azllm.data.sft import read_chat_messages
    from azllm.eval.bpb import evaluate_bpb, read_texts
    from azllm.eval.generation import aggregate_repetition, generate_samples
    from azllm.eval.load import load_model_and_tokenizer
    from azllm.eval.loss import assistant_token_loss
    from azllm.eval.rewards import answer_language
    from azllm.eval.scores import answer_questions, chrf, reference_answers
    from azllm.model.device import release_memory, select_placement

    placement = placement or select_placement()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = {name: read_texts(path) for name, path in files.items()}
    questions = read_chat_messages(sft_validation)[:cfg.max_sft_questions] if sft_validation else []

    metrics: dict[str, dict[str, Any]] = {}
    generations: list[dict[str, str]] = []
    for name, spec in models.items():
        logger.info("eval: %s (%s%s) on %s in %s", name, spec.model_dir,
                    f" + {spec.adapter_dir}" if spec.adapter_dir else "", placement.device, placement.dtype)
        model, tokenizer = load_model_and_tokenizer(spec.model_dir, spec.tokenizer_dir, spec.adapter_dir,
                                                    placement=placement)
        bpb = {f: evaluate_bpb(model, tokenizer, docs, max_documents=cfg.max_bpb_documents,
                               batch_size=cfg.batch_size, show_progress=False)
               for f, docs in texts.items()}
        samples = generate_samples(model, tokenizer, cfg.prompts, max_new_tokens=cfg.max_new_tokens,
                                   chat=spec.chat)
        generations += [{"model": name, "kind": "prompt", "prompt": p, "text": t}
                        for p, t in zip(cfg.prompts, samples, strict=True)]
        entry: dict[str, Any] = {
            "bpb": {f: r["bpb"] for f, r in bpb.items()},
            "bpb_detail": bpb,
            "repetition": aggregate_repetition(samples),
            "chrf": None,
            "assistant_loss": None,
            "azerbaijani_share": None,
            "answer_repeated_4gram_share": None,
        }
        if questions and (spec.adapter_dir is not None or spec.chat):
            answers = answer_questions(model, tokenizer, questions, cfg.max_new_tokens)
            entry["chrf"] = chrf(answers, reference_answers(questions))
            entry["azerbaijani_share"] = sum(answer_language(a) == "azerbaijani" for a in answers) / len(answers)
            entry["answer_repeated_4gram_share"] = aggregate_repetition(answers)["repeated_4gram_share"]
            entry["assistant_loss"] = assistant_token_loss(model, tokenizer, questions, batch_size=cfg.batch_size)
            generations += [{"model": name, "kind": "qa", "prompt": q[-2]["content"] if len(q) > 1 else "",
                             "text": a} for q, a in zip(questions, answers, strict=True)]
        metrics[name] = entry
        del model
        release_memory(placement)

    tables = {
        "bpb": pd.DataFrame({n: m["bpb"] for n, m in metrics.items()}).T.rename_axis("model"),
        "repetition": pd.DataFrame({n: m["repetition"] for n, m in metrics.items()}).T.rename_axis("model"),
        "sft": pd.DataFrame({n: {"chrf": m["chrf"], "assistant_loss": m["assistant_loss"],
                                 "azerbaijani_share": m["azerbaijani_share"],
                                 "answer_repeated_4gram_share": m["answer_repeated_4gram_share"]}
                             for n, m in metrics.items() if m["chrf"] is not None}).T.rename_axis("model"),
    }
    for table_name, table in tables.items():
        table.to_csv(out_dir / f"{table_name}.csv")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False), encoding="utf-8")
    with open(out_dir / "generations.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(g, ensure_ascii=False) + "\n" for g in generations)
    return EvalReport(metrics=metrics, tables=tables, generations=generations)
