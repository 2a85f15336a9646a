"""Metaflow card components for each step: tables and matplotlib figures that render offline.

Each `*_card` function takes plain results (dicts, DataFrames) and returns a list of card
components, so a step only does `current.card.extend(cpt_card(self.full_metrics, ...))`.
The `plot_*` functions return matplotlib figures (pyplot-free `Figure`s, so they
never open a window and display inline in Jupyter); `azllm.inspect` reuses them in the notebook.

Offline: Metaflow inlines its JavaScript and CSS in the card HTML and figures are embedded
as PNG data URIs, so a card opened from disk needs no network (its CSS asks Google Fonts for
Roboto; without network the browser falls back to a local sans-serif).

    >>> from azllm.cards import plot_cpt_curves
    >>> fig = plot_cpt_curves({"extend": {"full": {"history": [{"step": 1, "loss": 9.1, "lr": 1e-3}]}}})
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
from matplotlib.figure import Figure
from metaflow.cards import Image, Markdown, ProgressBar, Table

PHASES = ("embeddings", "full")
PHASE_STYLE = {"embeddings": "--", "full": "-"}
FERTILITY_SUMMARY_COLUMNS = ("tokenizer", "data", "fertility", "bytes_per_token", "words_per_context", "vocab_size")
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
# Tables and figures shared with azllm.inspect
# ---------------------------------------------------------------------------


def corpus_rows(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per corpus split: documents, MB, words, chars."""
    rows = []
    for split, s in stats.get("corpus", {}).items():
        if isinstance(s, dict) and "documents" in s:
            rows.append({"split": split, "documents": s["documents"], "MB": s.get("bytes", 0) / 1e6,
                         "words": s.get("words", 0), "chars": s.get("chars", 0)})
    return rows


def sft_rows(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per chat-record split (records, turns, ...), as prepare_data counted them."""
    return [{"split": k, **v} for k, v in stats.get("sft", {}).items() if isinstance(v, dict)]


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


def generations_side_by_side(generations: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per prompt, one column per model (base, cpt, sft...), greedy texts."""
    if not generations:
        return pd.DataFrame()
    df = pd.DataFrame(generations)
    if not {"model", "prompt", "text"} <= set(df.columns):
        return df
    wide = df.pivot_table(index="prompt", columns="model", values="text", aggfunc="first", sort=False)
    return wide.reset_index().rename_axis(columns=None)


def plot_fertility(rows: list[dict[str, Any]] | pd.DataFrame):
    """Grouped bars: fertility (tokens per word) per tokenizer, one bar per evaluation file."""
    df = pd.DataFrame(rows)
    fig = Figure(figsize=(7, 3.5), layout="tight")
    ax = fig.subplots()
    if {"tokenizer", "data", "fertility"} <= set(df.columns):
        df.pivot_table(index="tokenizer", columns="data", values="fertility", sort=False).plot.bar(ax=ax, rot=15)
    ax.set(title="fertility: tokens per word (lower is better)", ylabel="tokens / word", xlabel="")
    return fig


def plot_cpt_curves(cpt_metrics: dict[str, dict[str, dict]]):
    """Loss, learning rate, throughput and peak memory per arm; dashed = phase 1 (embeddings)."""
    df = history_frame(cpt_metrics)
    fig = Figure(figsize=(11, 6.5), layout="tight")
    axes = fig.subplots(2, 2)
    panels = [("loss", "training loss (nats/token)"), ("lr", "learning rate"),
              ("tokens_per_s", "throughput (tokens/s)"), ("peak_mem_gib", "peak memory (GiB; CUDA, else process RSS)")]
    colors = {arm: f"C{i}" for i, arm in enumerate(cpt_metrics)}
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        ax.set(title=title, xlabel="optimizer step (phase 1 then phase 2)")
        if df.empty or key not in df.columns:
            continue
        for (arm, phase), part in df.groupby(["arm", "phase"], sort=False):
            ax.plot(part["global_step"], part[key], PHASE_STYLE[phase], marker=".", color=colors[arm],
                    label=f"{arm} {phase}")
    axes[0, 0].legend(fontsize=7)
    return fig


def plot_bpb(bpb: dict[str, dict[str, float]]):
    """Bits per byte per model, one bar per evaluation file (comparable across tokenizers)."""
    df = pd.DataFrame(bpb).T
    fig = Figure(figsize=(7, 3.5), layout="tight")
    ax = fig.subplots()
    if not df.empty:
        df.plot.bar(ax=ax, rot=0)
    ax.set(title="bits per byte (lower is better)", ylabel="BPB")
    return fig


def plot_sft_loss(metrics: dict[str, Any]):
    """SFT training loss per logged step, with the validation assistant loss before and after."""
    history = metrics.get("train_loss_history") or []
    fig = Figure(figsize=(7, 3.2), layout="tight")
    ax = fig.subplots()
    if history:
        ax.plot([h["step"] for h in history], [h["loss"] for h in history], marker=".", label="train loss")
    for key, style in (("eval_assistant_loss_before", ":"), ("eval_assistant_loss_after", "--")):
        if metrics.get(key) is not None:
            ax.axhline(metrics[key], linestyle=style, color="grey", label=key.replace("eval_", "validation "))
    ax.set(title="LoRA SFT loss (nats per assistant token)", xlabel="optimizer step")
    ax.legend(fontsize=7)
    return fig


# ---------------------------------------------------------------------------
# One card per step
# ---------------------------------------------------------------------------


def data_card(stats: dict[str, Any]) -> list:
    """prepare_data: corpus splits, dropped documents by reason, chat-record splits."""
    out: list = [Markdown("# Data\nCorpus after cleaning and near-duplicate removal, split into train and "
                          "validation; chat records for SFT."), _table(corpus_rows(stats), "{:.3f}")]
    dropped = stats.get("corpus", {}).get("dropped")
    if dropped:
        out += [Markdown("**Dropped documents** (by reason)"), _table([dropped], "{}")]
    if stats.get("sft"):
        out += [Markdown("# Chat records"), _table(sft_rows(stats), "{:.1f}")]
    return out


def tokenizer_card(table: list[dict[str, Any]], chart_path: Path | None = None) -> list:
    """train_tokenizer: fertility table and chart of every candidate and reference tokenizer."""
    out: list = [Markdown("# Tokenizers\nFertility = tokens per word (lower is better); words per "
                          "131,072-token context (higher is better)."), _table(table, "{:.3f}")]
    if chart_path and Path(chart_path).exists():
        out.append(Image(Path(chart_path).read_bytes(), label="fertility"))
    else:
        out.append(_figure(plot_fertility(table), label="fertility"))
    return out


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
    out.append(_figure(plot_cpt_curves({arm: {phase: metrics}}), label=f"{arm} {phase} curves"))
    history = metrics.get("history") or []
    if history:
        cols = [c for c in ("step", "loss", "lr", "grad_norm", "tokens_per_s", "peak_mem_gib", "mfu")
                if c in history[0]]
        out += [Markdown("## Logged steps"), _table(pd.DataFrame(history)[cols], "{:.4g}")]
    return out


def arms_card(comparison: Any, cpt_metrics: dict[str, dict[str, dict]]) -> list:
    """join_cpt: BPB of base and every arm, the choice, training curves and throughput of all arms."""
    rows = [{"model": name, **scores} for name, scores in comparison.bpb.items()]
    return [Markdown(f"# CPT arms\nChosen for SFT: **{comparison.chosen_arm}** ({comparison.reason})."),
            _table(rows), _figure(plot_bpb(comparison.bpb), label="bits per byte"),
            Markdown("## Training curves (dashed: phase 1, embeddings only)"),
            _figure(plot_cpt_curves(cpt_metrics), label="CPT curves"),
            Markdown("## Throughput, memory, MFU"), _table(throughput_rows(cpt_metrics), "{:.4g}")]


def sft_card(metrics: dict[str, Any]) -> list:
    """sft_lora: loss curve and the validation assistant loss before vs after SFT."""
    before, after = metrics.get("eval_assistant_loss_before"), metrics.get("eval_assistant_loss_after")
    rows = [{"measure": "validation assistant loss (nats/token)", "before SFT": before, "after SFT": after}]
    return [Markdown(f"# LoRA SFT\n{_num(metrics.get('global_step'))} optimizer steps, loss on assistant tokens "
                     f"only; validation loss over {metrics.get('num_validation_records', '?')} held-out records."),
            _table(rows), _figure(plot_sft_loss(metrics), label="SFT loss")]


def eval_card(report: Any) -> list:
    """evaluate: BPB / repetition / SFT tables, BPB chart, generations side by side."""
    out: list = [Markdown("# Evaluation: base vs CPT vs SFT")]
    for name, df in report.tables.items():
        out += [Markdown(f"## {name}"), _table(df)]
    if getattr(report, "chart_path", None) and Path(report.chart_path).exists():
        out.append(Image(Path(report.chart_path).read_bytes(), label="bpb"))
    if report.generations:
        out += [Markdown("## Generations side by side (greedy)"),
                _table(generations_side_by_side(report.generations), "{:.3f}")]
    return out


def summary_card(flow: Any) -> list:
    """end: the whole story on one page, from data to the chat assistant."""
    metrics = getattr(flow, "metrics", None) or {}
    sft = getattr(flow, "sft_metrics", None) or {}
    out: list = [Markdown(
        f"# azllm run summary\nPreset **{_preset_name(flow)}**. Chosen CPT arm: **{flow.chosen_arm}**. "
        + _headline(flow.arm_bpb, metrics, sft))]
    out += [Markdown("## 1. Data")] + data_card(flow.data_stats)[1:2]
    fertility = pd.DataFrame(flow.fertility)
    fertility = fertility[[c for c in FERTILITY_SUMMARY_COLUMNS if c in fertility.columns]]
    out += [Markdown("## 2. Tokenizers (fertility, tokens per word)"), _table(fertility, "{:.3f}"),
            _figure(plot_fertility(flow.fertility), label="fertility")]
    cpt_metrics = getattr(flow, "cpt_metrics", None)
    if cpt_metrics:
        out += [Markdown("## 3. Continued pre-training (dashed: phase 1, embeddings only)"),
                _figure(plot_cpt_curves(cpt_metrics), label="CPT curves"),
                _table(throughput_rows(cpt_metrics), "{:.4g}")]
    out += [Markdown("## 4. Bits per byte: base vs arms"),
            _table([{"model": k, **v} for k, v in flow.arm_bpb.items()]),
            _figure(plot_bpb(flow.arm_bpb), label="bits per byte")]
    if sft:
        out += [Markdown("## 5. LoRA SFT")] + sft_card(sft)[1:]
    if metrics:
        out += [Markdown("## 6. Evaluation: base vs CPT vs SFT"), _table(metrics_rows(metrics))]
    generations = getattr(flow, "generations", None)
    if generations:
        out += [Markdown("## 7. Generations side by side (greedy)"),
                _table(generations_side_by_side(generations))]
    out.append(Markdown("## Look further\n`python flows/azllm_flow.py card view STEP` for any step; "
                        "`notebooks/inspect_runs.ipynb` for curves and run comparisons; "
                        "`azllm.inspect.fetch_tensorboard(run, dest)` then `tensorboard --logdir dest`."))
    return out


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


def _preset_name(flow: Any) -> str:
    try:
        return str(flow.config.name)
    except Exception:  # noqa: BLE001 - the summary must render even without a config
        return "?"


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
    The file is read with the trainer's own reader (`azllm.train.cpt.read_metrics_records`).
    The live components are removed at the end so the final card holds only `cpt_card`.
    """
    from azllm.train.metrics import read_metrics_records, step_history

    bar = ProgressBar(max=max(max_steps, 1), label=f"{title}: optimizer steps", value=0)
    text = Markdown(f"# {title}\nwaiting for the first logged step…")
    placeholder = Figure(figsize=(7, 3), layout="tight")
    ax = placeholder.subplots()
    ax.text(0.5, 0.5, "waiting for the first logged step", ha="center", va="center")
    ax.set_axis_off()
    chart = Image.from_matplotlib(placeholder, label="live loss", disable_updates=False)
    card.extend([text, bar, chart])
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

    def redraw(seen: int) -> int:
        history = step_history(read_metrics_records(metrics_path))
        if len(history) > seen:
            last = history[-1]
            bar.update(int(last["step"]), metadata=f"{last.get('tokens_per_s', 0):,.0f} tokens/s")
            text.update(f"# {title}\nstep {last['step']}/{max_steps}: loss {last['loss']:.4f}, "
                        f"lr {last.get('lr', 0):.2e}, peak memory {last.get('peak_mem_gib', 0):.2f} GiB")
            fig = Figure(figsize=(7, 3), layout="tight")
            ax = fig.subplots()
            ax.plot([h["step"] for h in history], [h["loss"] for h in history], marker=".")
            ax.set(title="training loss (nats/token)", xlabel="optimizer step")
            chart.update(fig)
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
