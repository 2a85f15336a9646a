"""Figures of a run's results: one function per plot, matplotlib only, no Metaflow.

Every `plot_*` returns a `matplotlib.figure.Figure` built without pyplot: no global
backend switch, no window, and it still saves (`fig.savefig("x.png")` uses the Agg
canvas) and displays inline in Jupyter. A `draw_*` function draws one panel on an
axes, so the cards (`azllm.steps.cards`), the notebook (`azllm.runs.explore`) and the overview
figure compose the same panels instead of redrawing them.

    >>> from azllm.report.plots import plot_cpt_curves
    >>> fig = plot_cpt_curves({"extend": {"full": {"history": [{"step": 1, "loss": 9.1, "lr": 1e-3}]}}})
    >>> fig.savefig("curves.png")
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from azllm.report.tables import history_frame
from azllm.tokenizer.metrics import CONTEXT_TOKENS

PHASE_STYLE = {"embeddings": "--", "full": "-"}
"""Line style per CPT phase: dashed = phase 1 (embeddings only)."""
CPT_PANELS = (("loss", "training loss (nats/token)"), ("lr", "learning rate"),
              ("tokens_per_s", "throughput (tokens/s)"),
              ("peak_mem_gib", "peak memory (GiB; CUDA, else process RSS)"))


# ---------------------------------------------------------------------------
# Panels
# ---------------------------------------------------------------------------


def draw_fertility(ax: Axes, rows: list[dict[str, Any]] | pd.DataFrame, column: str = "fertility") -> None:
    """Horizontal bars of `column` per tokenizer, one bar per evaluation file (`data`)."""
    df = pd.DataFrame(rows)
    labels = {"fertility": "tokens per word (lower is better)",
              "words_per_context": f"words per {CONTEXT_TOKENS:,}-token context (higher is better)"}
    if {"tokenizer", column} <= set(df.columns):
        if "data" in df.columns:
            df.pivot_table(index="tokenizer", columns="data", values=column, sort=False).plot.barh(ax=ax)
            ax.legend(title="data", fontsize=7)
        else:
            ax.barh(df["tokenizer"], df[column])
        ax.invert_yaxis()
    ax.set(xlabel=labels.get(column, column), ylabel="")


def draw_bpb(ax: Axes, bpb: dict[str, dict[str, float]], title: str = "bits per byte (lower is better)") -> None:
    """Bits per byte per model, one bar per evaluation file (comparable across tokenizers)."""
    df = pd.DataFrame(bpb).T
    if not df.empty:
        df.plot.bar(ax=ax, rot=0)
    ax.set(title=title, ylabel="BPB")


def draw_cpt(ax: Axes, cpt_metrics: dict[str, dict[str, dict]], key: str = "loss") -> None:
    """`key` per logged CPT step, one colour per arm, dashed = phase 1; phase 2 after the longest phase 1.

    Lines are labelled `arm phase`; the caller places the legend (one per figure is enough)."""
    df = history_frame(cpt_metrics)
    ax.set(xlabel="optimizer step (phase 1 then phase 2)")
    if df.empty or key not in df.columns:
        return
    colors = {arm: f"C{i}" for i, arm in enumerate(cpt_metrics)}
    for (arm, phase), part in df.groupby(["arm", "phase"], sort=False):
        ax.plot(part["global_step"], part[key], PHASE_STYLE[phase], marker=".", color=colors[arm],
                label=f"{arm} {phase}")


def draw_sft_loss(ax: Axes, metrics: dict[str, Any]) -> None:
    """SFT training loss per logged step, with the validation assistant loss before and after."""
    history = metrics.get("train_loss_history") or []
    if history:
        ax.plot([h["step"] for h in history], [h["loss"] for h in history], marker=".", label="train loss")
    for key, style in (("eval_assistant_loss_before", ":"), ("eval_assistant_loss_after", "--")):
        if metrics.get(key) is not None:
            ax.axhline(metrics[key], linestyle=style, color="grey", label=key.replace("eval_", "validation "))
    ax.set(title="LoRA SFT loss (nats per assistant token)", xlabel="optimizer step")
    ax.legend(fontsize=7)


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


def plot_fertility(rows: list[dict[str, Any]] | pd.DataFrame) -> Figure:
    """Fertility (left) and words per context (right) of every tokenizer on every evaluation file."""
    num_tokenizers = pd.DataFrame(rows).get("tokenizer", pd.Series(dtype=str)).nunique()
    fig = Figure(figsize=(12, max(3.0, 0.45 * num_tokenizers + 1.5)), layout="tight")
    left, right = fig.subplots(1, 2)
    draw_fertility(left, rows, "fertility")
    draw_fertility(right, rows, "words_per_context")
    fig.suptitle("Tokenizer efficiency")
    return fig


def plot_bpb(bpb: dict[str, dict[str, float]]) -> Figure:
    """Bits per byte of every model (base, arms, cpt, sft) on every evaluation file."""
    fig = Figure(figsize=(7, 3.5), layout="tight")
    draw_bpb(fig.subplots(), bpb)
    return fig


def draw_task_scores(ax: Axes, rows: list[dict[str, Any]], task: str) -> None:
    """One task's primary metric per model: bars with lm-eval's stderr, chance as a dashed line."""
    picked = [r for r in rows if r.get("primary") and r["task"] == task]
    if not picked:
        return
    ax.bar([r["model"] for r in picked], [r["value"] for r in picked],
           yerr=[r["stderr"] or 0.0 for r in picked], capsize=3, color="tab:blue")
    chance = picked[0].get("chance")
    if chance is not None:
        ax.axhline(chance, color="tab:red", linestyle="--", linewidth=1, label=f"chance {chance:.3g}")
        ax.legend(fontsize=7)
    ax.set(title=f"{task} (n={picked[0].get('n')})", ylabel=picked[0]["metric"])
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)


def plot_task_scores(rows: list[dict[str, Any]]) -> Figure:
    """Every task of `[eval] tasks`: one panel per task, a bar per model (error bars: stderr; dashed: chance)."""
    tasks = list(dict.fromkeys(r["task"] for r in rows if r.get("primary")))
    fig = Figure(figsize=(3.2 * max(1, len(tasks)), 3.2), layout="tight")
    axes = fig.subplots(1, max(1, len(tasks)), squeeze=False)[0]
    for ax, task in zip(axes, tasks, strict=False):
        draw_task_scores(ax, rows, task)
    return fig


def plot_cpt_curves(cpt_metrics: dict[str, dict[str, dict]]) -> Figure:
    """Loss, learning rate, throughput and peak memory per arm; dashed = phase 1 (embeddings)."""
    fig = Figure(figsize=(11, 6.5), layout="tight")
    for ax, (key, title) in zip(fig.subplots(2, 2).flat, CPT_PANELS, strict=True):
        draw_cpt(ax, cpt_metrics, key)
        ax.set_title(title)
    if fig.axes[0].get_lines():
        fig.axes[0].legend(fontsize=7)
    return fig


def plot_sft_loss(metrics: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(7, 3.2), layout="tight")
    draw_sft_loss(fig.subplots(), metrics)
    return fig


def plot_live_loss(history: list[dict[str, Any]]) -> Figure:
    """The loss so far of a CPT phase that is still training (the live card redraws it)."""
    fig = Figure(figsize=(7, 3), layout="tight")
    ax = fig.subplots()
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], marker=".")
    ax.set(title="training loss (nats/token)", xlabel="optimizer step")
    return fig


def plot_message(text: str) -> Figure:
    """A blank figure saying `text` (e.g. before the first logged step)."""
    fig = Figure(figsize=(7, 3), layout="tight")
    ax = fig.subplots()
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()
    return fig


def plot_overview(*, cpt_metrics: dict[str, dict[str, dict]], arm_bpb: dict[str, dict[str, float]],
                  fertility: list[dict[str, Any]], sft_metrics: dict[str, Any], chosen_arm: str,
                  title: str = "") -> Figure:
    """The notebook's main figure: CPT loss per arm, bits per byte, fertility, SFT loss in one 2x2 grid."""
    fig = Figure(figsize=(12, 7.5), layout="tight")
    (ax_loss, ax_bpb), (ax_fert, ax_sft) = fig.subplots(2, 2)
    draw_cpt(ax_loss, cpt_metrics, "loss")
    ax_loss.set_title("CPT training loss (nats/token; dashed: phase 1)")
    if ax_loss.get_lines():
        ax_loss.legend(fontsize=7)
    draw_bpb(ax_bpb, arm_bpb, title=f"bits per byte (lower is better); chosen arm: {chosen_arm}")
    draw_fertility(ax_fert, fertility, "fertility")
    ax_fert.set_title("fertility (tokens per word; lower is better)")
    draw_sft_loss(ax_sft, sft_metrics)
    if title:
        fig.suptitle(title)
    return fig
