"""Metaflow card components for each step: tables and matplotlib figures, rendered offline.

Each function takes plain results (dicts, DataFrames) and returns a list of card
components, so a step only does `current.card.extend(tokenizer_card(...))`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from metaflow.cards import Image, Markdown, Table  # noqa: E402


def _table(records: list[dict[str, Any]] | pd.DataFrame, floatfmt: str = "{:.4f}") -> Table:
    df = records if isinstance(records, pd.DataFrame) else pd.DataFrame(records)
    df = df.map(lambda v: floatfmt.format(v) if isinstance(v, float) else v)
    return Table.from_dataframe(df)


def _figure(fig) -> Image:
    img = Image.from_matplotlib(fig)
    plt.close(fig)
    return img


def data_card(stats: dict[str, Any]) -> list:
    rows = []
    for split, s in stats.get("corpus", {}).items():
        if isinstance(s, dict) and "documents" in s:
            rows.append({"split": split, "documents": s["documents"], "MB": s.get("bytes", 0) / 1e6,
                         "words": s.get("words", 0)})
    out: list = [Markdown("# Data"), _table(rows, "{:.3f}")]
    dropped = stats.get("corpus", {}).get("dropped")
    if dropped:
        out += [Markdown("**Dropped documents**"), _table([dropped], "{}")]
    sft = stats.get("sft", {})
    if sft:
        out += [Markdown("# Chat records"), _table([{"split": k, **v} for k, v in sft.items()
                                                    if isinstance(v, dict)], "{:.1f}")]
    return out


def tokenizer_card(table: list[dict[str, Any]], chart_path: Path | None) -> list:
    out: list = [Markdown("# Tokenizers\nFertility = tokens per word (lower is better); words per "
                          "131,072-token context (higher is better)."), _table(table, "{:.3f}")]
    if chart_path and Path(chart_path).exists():
        out.append(Image(Path(chart_path).read_bytes(), label="fertility"))
    return out


def _loss_figure(cpt_metrics: dict[str, dict[str, dict]]):
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for arm, phases in cpt_metrics.items():
        offset = 0
        for phase in ("embeddings", "full"):
            history = (phases.get(phase) or {}).get("history") or []
            steps = [offset + h["step"] for h in history if "loss" in h]
            if steps:
                style = "--" if phase == "embeddings" else "-"
                axes[0].plot(steps, [h["loss"] for h in history if "loss" in h], style, label=f"{arm} {phase}")
                axes[1].plot(steps, [h.get("lr", 0) for h in history if "loss" in h], style, label=f"{arm} {phase}")
                offset = steps[-1]
    axes[0].set(title="training loss (nats/token)", xlabel="optimizer step")
    axes[1].set(title="learning rate", xlabel="optimizer step")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _bpb_figure(bpb: dict[str, dict[str, float]]):
    df = pd.DataFrame(bpb).T
    fig, ax = plt.subplots(figsize=(6, 3.5))
    df.plot.bar(ax=ax, rot=0)
    ax.set(title="bits per byte (lower is better)", ylabel="BPB")
    fig.tight_layout()
    return fig


def arms_card(comparison: Any, cpt_metrics: dict[str, dict[str, dict]]) -> list:
    rows = [{"model": name, **scores} for name, scores in comparison.bpb.items()]
    out: list = [Markdown(f"# CPT arms\nChosen for SFT: **{comparison.chosen_arm}** ({comparison.reason})."),
                 _table(rows), _figure(_bpb_figure(comparison.bpb)), _figure(_loss_figure(cpt_metrics))]
    return out


def eval_card(report: Any) -> list:
    out: list = [Markdown("# Evaluation: base vs CPT vs SFT")]
    for name, df in report.tables.items():
        out += [Markdown(f"## {name}"), _table(df)]
    if getattr(report, "chart_path", None) and Path(report.chart_path).exists():
        out.append(Image(Path(report.chart_path).read_bytes(), label="bpb"))
    if report.generations:
        out += [Markdown("## Generations (greedy)"), _table(pd.DataFrame(report.generations), "{:.3f}")]
    return out


def summary_card(flow: Any) -> list:
    """The whole story on one page: data, tokenizer, arms, SFT."""
    out: list = [Markdown(f"# azllm run summary\nChosen arm: **{flow.chosen_arm}**")]
    out += data_card(flow.data_stats)[:2]
    out += [Markdown("## Tokenizers"), _table(flow.fertility, "{:.3f}")]
    out += [Markdown("## Bits per byte"), _table([{"model": k, **v} for k, v in flow.arm_bpb.items()]),
            _figure(_bpb_figure(flow.arm_bpb))]
    if getattr(flow, "metrics", None):
        out += [Markdown("## Evaluation metrics"), Markdown(f"```\n{_pretty(flow.metrics)}\n```")]
    return out


def _pretty(d: dict) -> str:
    import json

    return json.dumps(d, indent=1, ensure_ascii=False, default=str)[:6000]
