"""`join_cpt`: score the base model and every CPT arm on the same bytes and pick an arm.

Bits per byte (docs/DESIGN.md §9) is comparable across tokenizers because it is
normalised by the UTF-8 bytes of the scored text, not by tokens. Beside it, per arm, what
the tokenizer does on the validation text (fertility, new tokens, how many of them it
really emits) and how much text CPT saw: `arm_comparison_rows` makes the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azllm.config import PipelineConfig
from azllm.data.layout import PreparedData


@dataclass
class ArmComparison:
    bpb: dict[str, dict[str, float]]
    """{model: {file: bits per byte}}; models are `base` and each arm."""
    chosen_arm: str
    reason: str
    token_stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    """{model: arm_token_stats(...)} on the validation text; models are `base` and each arm."""
    task_scores: list[dict[str, Any]] = field(default_factory=list)
    """`[eval] tasks` rows (azllm.eval.tasks.SCORE_COLUMNS) of base and every arm; empty without tasks."""


def arm_token_stats(tokenizer: Any, base_tokenizer: Any, texts: list[str]) -> dict[str, Any]:
    """Fertility and bytes per token of `tokenizer` on `texts`, its new tokens (strings not in the
    base vocabulary, specials excluded, as FVT counts them) and how many distinct ones it emits there."""
    from azllm.tokenizer.extend import new_token_ids, used_token_ids
    from azllm.tokenizer.metrics import tokenizer_metrics

    m = tokenizer_metrics(tokenizer, texts)
    new = new_token_ids(tokenizer, base_tokenizer)
    return {"fertility": m["fertility"], "bytes_per_token": m["bytes_per_token"], "vocab_size": m["vocab_size"],
            "num_new_tokens": len(new), "num_new_tokens_used": len(new & used_token_ids(tokenizer, texts))}


def _phase_sum(phases: dict[str, dict] | None, key: str) -> float | None:
    values = [m.get(key) for m in (phases or {}).values() if m]
    return sum(v for v in values if v is not None) if any(v is not None for v in values) else None


def arm_comparison_rows(bpb: dict[str, dict[str, float]], token_stats: dict[str, dict[str, Any]],
                        cpt_metrics: dict[str, dict[str, dict]] | None = None, *,
                        files: tuple[str, ...] = ("validation", "other_domain")) -> list[dict[str, Any]]:
    """One row per model (`base`, then the arms) for the join step's table.

    Columns: fertility, vocabulary, new tokens and those used on the validation text, BPB per
    file (in / out of domain), what `[cpt] budget` held equal, CPT tokens and bytes seen (both
    phases: the trainer's `tokens_seen` / `bytes_seen`, else `tokens` x the arm's validation
    bytes per token; `bytes_seen_source` says which) and the device-hours (GPU-hours on a GPU
    host) the arm's phases used. A figure that is unknown is None, with the reason in `notes`.
    """
    rows = []
    for model, scores in bpb.items():
        stats = token_stats.get(model, {})
        notes = [] if stats else ["no tokenizer statistics"]
        row: dict[str, Any] = {"model": model, "fertility": stats.get("fertility"),
                               "vocab_size": stats.get("vocab_size"), "new_tokens": stats.get("num_new_tokens"),
                               "new_tokens_used": stats.get("num_new_tokens_used")}
        for f in files:
            row[f"bpb {f}"] = scores.get(f)
            if f not in scores:
                notes.append(f"no {f} file scored")
        phases = (cpt_metrics or {}).get(model)
        tokens = _phase_sum(phases, "tokens_seen")
        if tokens is None:
            tokens = _phase_sum(phases, "tokens")
        nbytes, source = _phase_sum(phases, "bytes_seen"), "metrics"
        if nbytes is None and tokens is not None and stats.get("bytes_per_token"):
            nbytes, source = round(tokens * stats["bytes_per_token"]), "estimate: tokens x validation bytes/token"
        if model == "base":
            source = "not trained"
        elif tokens is None:
            notes.append("no CPT metrics for this arm")
        budgets = {m.get("budget") for m in (phases or {}).values() if m and m.get("budget")}
        row.update({"budget": ", ".join(sorted(budgets)) or None, "cpt_tokens_seen": tokens,
                    "cpt_bytes_seen": nbytes,
                    "bytes_seen_source": source if nbytes is not None or model == "base" else None,
                    "device_hours": _phase_sum(phases, "device_hours"), "gpu_hours": _phase_sum(phases, "gpu_hours"),
                    "notes": "; ".join(notes)})
        rows.append(row)
    return rows


def choose_arm(bpb: dict[str, dict[str, float]], arms: list[str], *, pinned: str = "",
               file: str = "validation", task_scores: list[dict[str, Any]] | None = None,
               tasks: tuple[str, ...] = ()) -> tuple[str, str]:
    """The pinned arm, else with `tasks` the arm with the highest task score
    (azllm.eval.tasks.task_selection_score), else the arm with the lowest BPB on `file`."""
    if pinned:
        return pinned, f"pinned by cpt.select_arm = {pinned!r}"
    if tasks:
        from azllm.eval.tasks import task_selection_score

        score = {a: task_selection_score(task_scores or [], a, tasks) for a in arms}
        best = max(arms, key=lambda a: score[a])
        return best, (f"highest mean task score over {list(tasks)} normalised by chance ({score[best]:.4f}; "
                      "cpt.select_by = 'tasks')")
    best = min(arms, key=lambda a: bpb[a][file])
    return best, f"lowest {file} BPB ({bpb[best][file]:.4f})"


def compare_arms(cfg: PipelineConfig, *, arm_models: dict[str, Path], data: PreparedData) -> ArmComparison:
    """BPB of base and arms on validation (and other-domain) text, and each tokenizer's statistics on
    the validation text; `arm_models`: arm -> its CPT model directory (tokenizer included). Scored on
    the step's accelerator when it has one (`placement_for_model_dtype`), `[eval] batch_size` windows
    per forward pass."""
    from azllm.eval.bpb import evaluate_bpb_files, read_texts
    from azllm.model.device import placement_for_model_dtype, release_memory
    from azllm.model.load import materialize_base_model
    from azllm.tokenizer.load import load_tokenizer

    files = data.require("validation").eval_files
    base_dir = materialize_base_model(cfg.model)
    models = {"base": base_dir, **arm_models}
    validation = read_texts(files["validation"])
    base_tokenizer = load_tokenizer(base_dir)
    placement = placement_for_model_dtype(cfg.model.dtype)
    print(f"[azllm] BPB on {placement.device} in {placement.dtype}, {cfg.eval.batch_size} windows per pass",
          flush=True)
    bpb, token_stats = {}, {}
    for name, model_dir in models.items():
        scores = evaluate_bpb_files(model_dir, model_dir, files, max_documents=cfg.eval.max_bpb_documents,
                                    placement=placement, batch_size=cfg.eval.batch_size,
                                    context_length=cfg.cpt.block_size)  # the context the arms trained on
        release_memory(placement)
        bpb[name] = {f: round(float(s["bpb"]), 6) for f, s in scores.items()}
        token_stats[name] = arm_token_stats(load_tokenizer(model_dir), base_tokenizer, validation)
        print(f"[azllm] BPB {name}: {bpb[name]}; tokenizer on validation: {token_stats[name]}", flush=True)
    task_scores: list[dict[str, Any]] = []
    if cfg.eval.tasks:
        from azllm.eval.report import ModelSpec
        from azllm.eval.tasks import evaluate_task_models

        task_scores = evaluate_task_models(cfg.eval, {name: ModelSpec(model_dir=m, tokenizer_dir=m)
                                                      for name, m in models.items()}, placement=placement).rows
    arm, reason = choose_arm(bpb, list(arm_models), pinned=cfg.cpt.select_arm, task_scores=task_scores,
                             tasks=cfg.eval.tasks if cfg.cpt.select_by == "tasks" else ())
    return ArmComparison(bpb=bpb, chosen_arm=arm, reason=reason, token_stats=token_stats, task_scores=task_scores)
