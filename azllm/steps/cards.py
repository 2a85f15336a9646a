"""Metaflow card components for each step: the tables of `azllm.report.tables` and the figures of
`azllm.report.plots`.

Each `*_card` function takes plain results (dicts, DataFrames) and returns a list of card
components, so a step only does `current.card.extend(cpt_card(self.full_metrics, ...))`.
The summary card composes the same named pieces (`corpus_components`, `sft_components` ...)
as the step cards. Nothing here computes or draws: it only wraps tables and figures.

Offline: Metaflow inlines its JavaScript and CSS in the card HTML and figures are embedded
as PNG data URIs, so a card opened from disk needs no network (its CSS asks Google Fonts for
Roboto; without network the browser falls back to a local sans-serif).

    >>> from azllm.steps.cards import cpt_card
    >>> components = cpt_card({"history": [{"step": 1, "loss": 9.1, "lr": 1e-3}], "steps": 1},
    ...                       arm="extend", phase="full")
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from metaflow.cards import Image, Markdown, ProgressBar, Table

from azllm.report import plots, tables
from azllm.report.summary import RunSummary

MAX_CELL_CHARS = 400
"""Generated texts longer than this are cut in card tables (the artifact keeps them whole)."""


# ---------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------


def _table(records: list[dict[str, Any]] | pd.DataFrame, floatfmt: str = "{:.4f}") -> Table:
    """A card table without pandas' positional index column; a named index becomes a column."""
    df = records if isinstance(records, pd.DataFrame) else pd.DataFrame(records)
    if not isinstance(df.index, pd.RangeIndex):
        df = df.reset_index()
    rows = [[_cell(v, floatfmt) for v in row] for row in df.itertuples(index=False)]
    return Table(data=rows or [[]], headers=[str(c) for c in df.columns])


def _cell(value: Any, floatfmt: str) -> Any:
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalar -> Python
        value = value.item()
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        return f"{value:,.0f}" if abs(value) >= 1000 else floatfmt.format(value)
    if isinstance(value, str) and len(value) > MAX_CELL_CHARS:
        return value[:MAX_CELL_CHARS] + " …"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)[:MAX_CELL_CHARS]
    return value


def _figure(fig, label: str | None = None) -> Image:
    return Image.from_matplotlib(fig, label=label)


def _num(value: Any, fmt: str = "{:,.0f}") -> str:
    return "n/a" if value is None else fmt.format(value)


# ---------------------------------------------------------------------------
# Pieces shared by the step cards and the summary
# ---------------------------------------------------------------------------


def corpus_table(stats: dict[str, Any]) -> Table:
    """The corpus splits: documents, MB, words, chars."""
    return _table(tables.corpus_rows(stats), "{:.3f}")


def dropped_components(stats: dict[str, Any]) -> list:
    """Dropped documents by source and reason (with an example), and the near-duplicate clusters."""
    out: list = []
    dropped = tables.dropped_rows(stats)
    if dropped:
        out += [Markdown("**Dropped documents** (by source and reason, one example each)"), _table(dropped, "{}")]
    near = tables.near_duplicate_rows(stats)
    if near:
        out += [Markdown("**Near-duplicate clusters** (MinHash, word 5-grams, 14 bands x 8 rows)"), _table(near, "{}")]
    return out


def fertility_components(rows: list[dict[str, Any]]) -> list:
    """The fertility table's headline columns and the fertility figure."""
    return [_table(tables.fertility_summary(rows), "{:.3f}"), _figure(plots.plot_fertility(rows), "fertility")]


def bpb_components(bpb: dict[str, dict[str, float]]) -> list:
    """Bits per byte of every model: table and bars."""
    return [_table(tables.bpb_rows(bpb)), _figure(plots.plot_bpb(bpb), "bits per byte")]


def arm_comparison_components(bpb: dict[str, dict[str, float]], token_stats: dict[str, dict] | None,
                              cpt_metrics: dict[str, dict[str, dict]] | None) -> list:
    """Per arm: fertility, new tokens (and those used), BPB in and out of domain, what was held equal,
    tokens and bytes seen, device-hours."""
    from azllm.eval.compare import arm_comparison_rows

    if not token_stats:
        return []
    return [Markdown("## Arms compared"), _table(arm_comparison_rows(bpb, token_stats, cpt_metrics), "{:.4g}")]


def task_components(rows: list[dict[str, Any]] | None, title: str) -> list:
    """`[eval] tasks` (lm-evaluation-harness): the primary metrics table and one bar chart."""
    if not rows:
        return []
    return [Markdown(f"## {title}"), _table(tables.task_score_table(rows)),
            _figure(plots.plot_task_scores(rows), "tasks")]


def quality_components(summary: RunSummary) -> list:
    """A plain warning when the chosen model is demo-scale (a few optimizer steps)."""
    from azllm.eval.quality import run_quality_verdict

    verdict = run_quality_verdict((summary.cpt_metrics or {}).get(summary.chosen_arm), summary.sft_metrics)
    return [Markdown(f"> **{verdict.message}**")] if verdict.demo_scale else []


def cpt_curves(cpt_metrics: dict[str, dict[str, dict]]) -> Image:
    """Training curves of every arm and phase."""
    return _figure(plots.plot_cpt_curves(cpt_metrics), "CPT curves")


def throughput_table(cpt_metrics: dict[str, dict[str, dict]]) -> Table:
    """Steps, tokens, loss, throughput, memory and MFU per arm and phase."""
    return _table(tables.throughput_rows(cpt_metrics), "{:.4g}")


def sft_components(metrics: dict[str, Any]) -> list:
    """Validation assistant loss before vs after SFT, and the loss curve."""
    return [_table(tables.sft_loss_rows(metrics)), _figure(plots.plot_sft_loss(metrics), "SFT loss")]


def generations_components(generations: list[dict[str, Any]]) -> list:
    return [_table(tables.generations_side_by_side(generations), "{:.3f}")]


# ---------------------------------------------------------------------------
# One card per step
# ---------------------------------------------------------------------------


def data_card(stats: dict[str, Any]) -> list:
    """join_data: corpus splits, dropped documents by reason, chat-record splits."""
    out: list = [Markdown("# Data\nCorpus after encoding repair, NFC and look-alike letters, PII placeholders, "
                          "language ID, FineWeb-2 quality filters (azj_Latn), exact and MinHash near-duplicate "
                          "removal and n-gram decontamination; split into train and validation (by hash); "
                          "chat records for SFT."), corpus_table(stats)] + dropped_components(stats)
    if stats.get("sft"):
        out += [Markdown("# Chat records"), _table(tables.sft_rows(stats), "{:.1f}")]
    return out


def tokenizer_card(table: list[dict[str, Any]]) -> list:
    """train_tokenizer: fertility table and chart of every candidate and reference tokenizer."""
    return [Markdown("# Tokenizers\nFertility = tokens per word (lower is better); words per "
                     "131,072-token context (higher is better)."), _table(table, "{:.3f}"),
            _figure(plots.plot_fertility(table), "fertility")]


def cpt_card(metrics: dict[str, Any], *, arm: str, phase: str, node_rank: int = 0) -> list:
    """cpt_embeddings / cpt_full: headline numbers, then loss / LR / throughput / memory curves.

    `node_rank` > 0: a worker node of a multi-node gang, which logs nothing itself."""
    if node_rank > 0:
        return [Markdown(f"# CPT {phase}: {arm}, node {node_rank}\nThis node trained its shards of the model; "
                         "the metrics, curves and exported model are on node 0's task.")]
    if metrics.get("skipped"):
        return [Markdown(f"# CPT {phase}: {arm}\nPass-through: the `{arm}` arm adds no new tokens, so "
                         "phase 1 only adapts the vocabulary (no training).")]
    mfu = metrics.get("mfu")
    packed = metrics.get("packed") or {}
    out: list = [Markdown(
        f"# CPT {phase}: {arm}\n"
        f"{_num(metrics.get('steps'))} steps, {_num(metrics.get('tokens'))} tokens "
        f"({_num(packed.get('blocks'))} packed blocks); loss {_num(metrics.get('first_loss'), '{:.3f}')} → "
        f"**{_num(metrics.get('final_loss'), '{:.3f}')}**; {_num(metrics.get('tokens_per_s'))} tokens/s; "
        f"peak memory {_num(metrics.get('peak_mem_gib'), '{:.2f}')} GiB; "
        f"MFU {'n/a (CPU)' if mfu is None else f'{mfu:.1%}'}; world size {metrics.get('world_size', 'n/a')}."
        + (f"\n\nResumed from a checkpoint at step(s) {metrics['resumed_at_steps']}."
           if metrics.get("resumed_at_steps") else ""))]
    out.append(_figure(plots.plot_cpt_curves({arm: {phase: metrics}}), f"{arm} {phase} curves"))
    steps = tables.logged_steps(metrics.get("history") or [])
    if not steps.empty:
        out += [Markdown("## Logged steps"), _table(steps, "{:.4g}")]
    return out


def arms_card(comparison: Any, cpt_metrics: dict[str, dict[str, dict]]) -> list:
    """join_cpt: BPB of base and every arm, the choice, training curves and throughput of all arms."""
    return ([Markdown(f"# CPT arms\nChosen for SFT: **{comparison.chosen_arm}** ({comparison.reason}).")]
            + arm_comparison_components(comparison.bpb, comparison.token_stats, cpt_metrics)
            + bpb_components(comparison.bpb)
            + task_components(getattr(comparison, "task_scores", None),
                              "Tasks (lm-evaluation-harness; dashed: chance, bars: stderr)")
            + [Markdown("## Training curves (dashed: phase 1, embeddings only)"), cpt_curves(cpt_metrics),
               Markdown("## Throughput, memory, MFU"), throughput_table(cpt_metrics)])


def sft_card(metrics: dict[str, Any]) -> list:
    """sft_lora: loss curve and the validation assistant loss before vs after SFT."""
    return [Markdown(f"# LoRA SFT\n{_num(metrics.get('global_step'))} optimizer steps, loss on assistant tokens "
                     f"only; validation loss over {metrics.get('num_validation_records', '?')} held-out records.")
            ] + sft_components(metrics)


def preference_card(metrics: dict[str, Any], pairs: list[dict[str, Any]] | None = None) -> list:
    """preference: what DPO trained on (pairs, margin, skipped prompts by reason) or GRPO's rewards per step."""
    method = str(metrics.get("method", "?")).upper()
    out: list = [Markdown(f"# Preference stage: {method} on the SFT adapter\n"
                          f"{_num(metrics.get('global_step'))} optimizer steps in {_num(metrics.get('seconds'))} s.")]
    if "num_pairs" in metrics:
        skipped = metrics.get("skipped") or {}
        out += [Markdown(f"## DPO pairs\nSource: **{metrics.get('pairs_source')}** (`run` = reference answer chosen, "
                         f"the SFT model's sampled answer rejected when worse by the margin: not Azerbaijani, a "
                         f"repeated 4-gram, or chrF below 100 - {metrics.get('pair_margin')}). "
                         f"{_num(metrics['num_pairs'])} pairs, {_num(sum(skipped.values()))} skipped."),
                _table([{"skipped because": k, "prompts": v} for k, v in skipped.items()] or
                       [{"skipped because": "(none)", "prompts": 0}])]
        if pairs:
            out.append(_table([{"prompt": p["prompt"][-1]["content"][:80], "chosen": p["chosen"][:80],
                                "rejected": p["rejected"][:80], "why": p.get("why_rejected", "")} for p in pairs]))
    history = metrics.get("train_history") or []
    if history:
        out += [Markdown("## Per step (TensorBoard has the same curves)"), _table(history)]
    return out


def eval_card(report: Any) -> list:
    """evaluate: BPB / repetition / SFT tables, BPB chart, generations side by side."""
    out: list = [Markdown("# Evaluation: base vs CPT vs SFT (vs preference)")]
    for name, df in report.tables.items():
        out += [Markdown(f"## {name}"), _table(df)]
    out.append(_figure(plots.plot_bpb({name: m["bpb"] for name, m in report.metrics.items()}), "bpb"))
    out += task_components(getattr(report, "task_scores", None),
                           "Tasks (lm-evaluation-harness; chat models without their chat template; dashed: chance)")
    if report.generations:
        out += [Markdown("## Generations side by side (greedy)")] + generations_components(report.generations)
    return out


def summary_card(summary: RunSummary, run_id: str | None = None, *, exported: bool = False) -> list:
    """end: the whole story on one page, from data to the chat assistant (and the exported model, when `exported`)."""
    metrics = summary.metrics or {}
    sft = summary.sft_metrics or {}
    bpb = summary.arm_bpb or {}
    out: list = [Markdown(
        f"# azllm run summary\nPreset **{summary.preset_name}**. Chosen CPT arm: **{summary.chosen_arm}**. "
        + _headline(bpb, metrics, sft))] + quality_components(summary)
    out += [Markdown("## 1. Data"), corpus_table(summary.data_stats or {})]
    out += [Markdown("## 2. Tokenizers (fertility, tokens per word)")] + fertility_components(summary.fertility or [])
    cpt_metrics = summary.cpt_metrics
    if cpt_metrics:
        out += [Markdown("## 3. Continued pre-training (dashed: phase 1, embeddings only)"),
                cpt_curves(cpt_metrics), throughput_table(cpt_metrics)]
    out += ([Markdown("## 4. Bits per byte: base vs arms")]
            + arm_comparison_components(bpb, summary.arm_token_stats, cpt_metrics)
            + bpb_components(bpb))
    if sft:
        out += [Markdown("## 5. LoRA SFT")] + sft_components(sft)
    if metrics:
        out += [Markdown("## 6. Evaluation: base vs CPT vs SFT"), _table(tables.metrics_rows(metrics))]
    if summary.generations:
        out += [Markdown("## 7. Generations side by side (greedy)")] + generations_components(summary.generations)
    if run_id and exported:
        from azllm.report.model_card import export_markdown

        out.append(Markdown(export_markdown(run_id, summary)))
    out.append(Markdown("## Look further\n`python flows/azllm_flow.py card view STEP` for any step; "
                        "`notebooks/inspect_runs.ipynb` for curves and run comparisons; "
                        "`azllm.runs.explore.fetch_tensorboard(run, dest)` then `tensorboard --logdir dest`."))
    return out


def _headline(bpb: dict[str, dict[str, float]], metrics: dict, sft: dict) -> str:
    parts = []
    base = bpb.get("base") or {}
    for model in ("cpt", "sft"):
        scores = (metrics.get(model) or {}).get("bpb") or {}
        shared = sorted(set(scores) & set((metrics.get("base") or {}).get("bpb") or {}))
        if shared:
            f = shared[0]
            parts.append(f"{model} BPB on {f}: {scores[f]:.3f} (base {metrics['base']['bpb'][f]:.3f})")
    if not parts and base:
        f = next(iter(base))
        parts.append(f"base BPB on {f}: {base[f]:.3f}")
    if sft.get("eval_assistant_loss_before") is not None and sft.get("eval_assistant_loss_after") is not None:
        parts.append(f"assistant loss {sft['eval_assistant_loss_before']:.3f} → "
                     f"{sft['eval_assistant_loss_after']:.3f} after SFT")
    return "; ".join(parts) + "." if parts else ""


# ---------------------------------------------------------------------------
# Live training card (cards with refresh_interval)
# ---------------------------------------------------------------------------


@contextmanager
def live_training_card(card: Any, metrics_path: Path, *, max_steps: int, title: str,
                       every_s: float = 10.0) -> Iterator[None]:
    """While the body runs, poll `metrics_path` (JSON lines from the CPT workers) and redraw a
    progress bar, the latest numbers and the loss curve on `card` (Metaflow's `current.card`).

        with live_training_card(current.card, metrics_path(out), max_steps=400, title="extend"):
            result = train_full_phase(...)

    The step needs `@card(refresh_interval=...)`; Metaflow rate-limits `card.refresh()` itself.
    The file is read with the trainer's own reader (`azllm.train.metrics.read_metrics_records`).
    The live components are removed at the end so the final card holds only `cpt_card`.
    """
    from azllm.train.metrics import read_metrics_records, step_history

    def progress(steps: int) -> ProgressBar:
        return ProgressBar(max=max(steps, 1), label=f"{title}: optimizer steps", value=0)

    live = {"max_steps": max_steps, "bar": progress(max_steps)}
    text = Markdown(f"# {title}\nwaiting for the first logged step…")
    chart = Image.from_matplotlib(plots.plot_message("waiting for the first logged step"), label="live loss",
                                  disable_updates=False)
    card.extend([text, live["bar"], chart])
    card.refresh()
    stop = threading.Event()

    def poll() -> None:
        seen = 0
        while not stop.wait(every_s):
            try:
                seen = redraw(seen)
            except Exception as exc:  # noqa: BLE001 - a live view must never fail the training step
                print(f"[azllm] live card for {title} stopped updating: {exc!r}", flush=True)
                return

    def follow_plan(records: list[dict]) -> None:
        """The workers' own step count (their start record) replaces the configured one: under
        `[cpt] budget = "tokens"|"bytes"` the phase runs the steps the budget derives."""
        planned = next((r["max_steps"] for r in reversed(records) if r.get("event") == "start"
                        and r.get("max_steps")), live["max_steps"])
        if planned != live["max_steps"]:
            live["max_steps"], live["bar"] = planned, progress(planned)
            card.clear()
            card.extend([text, live["bar"], chart])

    def redraw(seen: int) -> int:
        records = read_metrics_records(metrics_path)
        follow_plan(records)
        history = step_history(records)
        if len(history) > seen:
            last = history[-1]
            live["bar"].update(int(last["step"]), metadata=f"{last.get('tokens_per_s', 0):,.0f} tokens/s")
            text.update(f"# {title}\nstep {last['step']}/{live['max_steps']}: loss {last['loss']:.4f}, "
                        f"lr {last.get('lr', 0):.2e}, peak memory {last.get('peak_mem_gib', 0):.2f} GiB")
            chart.update(plots.plot_live_loss(history))
            card.refresh()
        return len(history)

    thread = threading.Thread(target=poll, name="azllm-live-card", daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every_s + 5)
        card.clear()
        print(f"[azllm] live card for {title} stopped after {time.monotonic() - started:.0f}s", flush=True)
