"""Tables of a run's results: rows and DataFrames made from the flow's small artifacts.

Pure pandas, no Metaflow: the step cards (`azllm.steps.cards`), the notebook (through
`azllm.runs.explore`) and a plain shell all read the same tables from the same artifacts
(`data_stats`, `fertility`, `cpt_metrics`, `arm_bpb`, `sft_metrics`, `metrics`, `generations`).

    >>> from azllm.report.tables import throughput_rows
    >>> throughput_rows({"extend": {"full": {"steps": 10, "tokens": 2560, "tokens_per_s": 900.0}}})
"""

from __future__ import annotations

from typing import Any

import pandas as pd

PHASES = ("embeddings", "full")
"""CPT phases in training order: phase 1 trains the embeddings, phase 2 all parameters."""
FERTILITY_SUMMARY_COLUMNS = ("tokenizer", "data", "fertility", "bytes_per_token", "words_per_context", "vocab_size")
LOGGED_STEP_COLUMNS = ("step", "loss", "lr", "grad_norm", "tokens_per_s", "peak_mem_gib", "mfu")


def corpus_rows(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per corpus split: documents, MB, words, chars."""
    rows = []
    for split, s in stats.get("corpus", {}).items():
        if isinstance(s, dict) and "documents" in s:
            rows.append({"split": split, "documents": s["documents"], "MB": s.get("bytes", 0) / 1e6,
                         "words": s.get("words", 0), "chars": s.get("chars", 0)})
    return rows


def dropped_rows(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """Documents dropped while preparing the corpus: one row per (source, reason) with an example."""
    from azllm.data.stats import filter_rows

    return filter_rows(stats.get("corpus", {}))


def near_duplicate_rows(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """MinHash near-duplicate clusters: how many, documents removed, the largest cluster."""
    near = stats.get("corpus", {}).get("near_duplicates") or {}
    if not near:
        return []
    return [{"clusters": near.get("clusters"), "documents removed": near.get("documents_removed"),
             "largest cluster": near.get("largest")}]


def sft_rows(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per chat-record split (records, turns, ...), as join_data counted them."""
    return [{"split": k, **v} for k, v in stats.get("sft", {}).items() if isinstance(v, dict)]


def fertility_summary(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The fertility table cut to its headline columns (tokenizer, data, fertility, bytes/token, ...)."""
    df = pd.DataFrame(rows)
    return df[[c for c in FERTILITY_SUMMARY_COLUMNS if c in df.columns]]


def bpb_rows(bpb: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """{model: {file: bpb}} as one row per model."""
    return [{"model": name, **scores} for name, scores in bpb.items()]


def history_frame(cpt_metrics: dict[str, dict[str, dict]]) -> pd.DataFrame:
    """Every logged CPT step as a row: arm, phase, step, global_step, loss, lr, ...

    `global_step` puts phase 2 of every arm after the longest phase 1, so the phases line up
    across arms (the baseline arm has no phase 1).
    """
    def logged(arm: str, phase: str) -> list[dict]:
        return [h for h in (cpt_metrics[arm].get(phase) or {}).get("history") or [] if "loss" in h]

    phase1_steps = max((h["step"] for arm in cpt_metrics for h in logged(arm, "embeddings")), default=0)
    offsets = {"embeddings": 0, "full": phase1_steps}
    rows = [{"arm": arm, "phase": phase, "global_step": offsets[phase] + h["step"], **h}
            for arm in cpt_metrics for phase in PHASES for h in logged(arm, phase)]
    return pd.DataFrame(rows)


def logged_steps(history: list[dict[str, Any]]) -> pd.DataFrame:
    """One CPT phase's logged steps with the columns worth reading (step, loss, lr, grad norm, ...)."""
    if not history:
        return pd.DataFrame()
    return pd.DataFrame(history)[[c for c in LOGGED_STEP_COLUMNS if c in history[0]]]


def throughput_rows(cpt_metrics: dict[str, dict[str, dict]]) -> list[dict[str, Any]]:
    """Per arm and phase: steps, tokens, loss first -> last, tokens/s, peak memory (GiB), MFU."""
    rows = []
    for arm, phases in cpt_metrics.items():
        for phase in PHASES:
            m = phases.get(phase) or {}
            if m.get("skipped"):
                rows.append({"arm": arm, "phase": f"{phase} (pass-through)", "steps": 0})
            elif m:
                rows.append({"arm": arm, "phase": phase, "steps": m.get("steps"), "tokens": m.get("tokens"),
                             "first_loss": m.get("first_loss"), "final_loss": m.get("final_loss"),
                             "tokens_per_s": m.get("tokens_per_s"), "peak_mem_gib": m.get("peak_mem_gib"),
                             "mfu": m.get("mfu"), "world_size": m.get("world_size")})
    return rows


def sft_loss_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The validation assistant loss before and after LoRA SFT (one row)."""
    return [{"measure": "validation assistant loss (nats/token)",
             "before SFT": metrics.get("eval_assistant_loss_before"),
             "after SFT": metrics.get("eval_assistant_loss_after")}]


def metrics_rows(metrics: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Flatten {model: {"bpb": {file: v}, "repetition": {...}, "chrf": v, ...}} into one row per model."""
    rows = []
    for model, m in metrics.items():
        row: dict[str, Any] = {"model": model}
        for key, value in m.items():
            if isinstance(value, dict):
                row.update({f"{key} {k}": v for k, v in value.items() if not isinstance(v, dict | list)})
            elif not isinstance(value, list):
                row[key] = value
        rows.append(row)
    return rows


def generations_side_by_side(generations: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per prompt, one column per model (base, cpt, sft...), greedy texts."""
    if not generations:
        return pd.DataFrame()
    df = pd.DataFrame(generations)
    if not {"model", "prompt", "text"} <= set(df.columns):
        return df
    wide = df.pivot_table(index="prompt", columns="model", values="text", aggfunc="first", sort=False)
    return wide.reset_index().rename_axis(columns=None)


def task_score_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """`[eval] tasks`: each task's primary metric per model, with stderr, documents and chance."""
    df = pd.DataFrame([r for r in rows if r.get("primary")])
    if df.empty:
        return df
    keep = [c for c in ("task", "metric", "model", "value", "stderr", "n", "chance", "num_fewshot", "chat_template")
            if c in df.columns]
    return df[keep].reset_index(drop=True)
