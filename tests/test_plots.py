"""azllm.report.plots and azllm.report.tables: one function per figure and table, no pyplot, no Metaflow.

    .venv/bin/python -m pytest -q tests/test_plots.py

Runs in a fresh interpreter where it matters (the global backend), otherwise on small
artifacts shaped like the flow's.
"""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT

HISTORY = [{"step": s, "loss": 10.0 - s, "lr": 1e-3, "tokens_per_s": 500.0, "peak_mem_gib": 1.0} for s in (1, 2, 3)]
CPT_METRICS = {"baseline": {"embeddings": {"skipped": True}, "full": {"history": HISTORY}},
               "extend": {"embeddings": {"history": HISTORY}, "full": {"history": HISTORY}}}
FERTILITY = [{"tokenizer": t, "data": d, "fertility": f, "words_per_context": 131072 / f}
             for t, f in (("bbpe-800", 1.5), ("base:gpt2", 2.5)) for d in ("validation", "news")]
BPB = {"base": {"validation": 1.2, "news": 1.3}, "extend": {"validation": 1.0, "news": 1.1}}
SFT = {"train_loss_history": [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0}],
       "eval_assistant_loss_before": 3.2, "eval_assistant_loss_after": 2.5}


def test_drawing_switches_no_backend_and_needs_no_metaflow():
    code = ("import sys, matplotlib; before = matplotlib.get_backend(); "
            "from azllm.report import plots; plots.plot_bpb({'base': {'v': 1.0}}).savefig('/dev/null', format='png'); "
            "assert matplotlib.get_backend() == before, (before, matplotlib.get_backend()); "
            "assert 'metaflow' not in sys.modules, 'plots imported metaflow'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


def test_fertility_has_one_bar_per_tokenizer_and_file_in_both_panels():
    from azllm.report.plots import plot_fertility

    fig = plot_fertility(FERTILITY)
    fertility, capacity = fig.axes[:2]
    assert len(fertility.patches) == len(capacity.patches) == 4
    assert "tokens per word" in fertility.get_xlabel() and "131,072" in capacity.get_xlabel()


def test_cpt_curves_draw_every_arm_and_phase_with_phase_two_after_phase_one():
    from azllm.report.plots import plot_cpt_curves

    loss = plot_cpt_curves(CPT_METRICS).axes[0]
    lines = {line.get_label(): line for line in loss.get_lines()}
    assert set(lines) == {"baseline full", "extend embeddings", "extend full"}
    assert list(lines["baseline full"].get_xdata()) == [4, 5, 6]
    assert lines["extend embeddings"].get_linestyle() == "--"


def test_overview_composes_the_same_panels():
    from azllm.report.plots import plot_overview

    fig = plot_overview(cpt_metrics=CPT_METRICS, arm_bpb=BPB, fertility=FERTILITY, sft_metrics=SFT,
                        chosen_arm="extend", title="AzLLMFlow/1")
    loss, bpb, fertility, sft = fig.axes[:4]
    assert len(loss.get_lines()) == 3 and len(bpb.patches) == 4 and len(fertility.patches) == 4
    assert "chosen arm: extend" in bpb.get_title()
    assert {line.get_label() for line in sft.get_lines()} >= {"train loss", "validation assistant_loss_after"}


def test_tables_from_artifacts():
    from azllm.report.tables import bpb_rows, dropped_rows, fertility_summary, logged_steps, throughput_rows

    assert bpb_rows(BPB)[1] == {"model": "extend", "validation": 1.0, "news": 1.1}
    assert list(fertility_summary(FERTILITY).columns) == ["tokenizer", "data", "fertility", "words_per_context"]
    assert list(logged_steps(HISTORY).columns) == ["step", "loss", "lr", "tokens_per_s", "peak_mem_gib"]
    assert [r["phase"] for r in throughput_rows(CPT_METRICS)] == ["embeddings (pass-through)", "full",
                                                                   "embeddings", "full"]
    assert dropped_rows({"corpus": {}}) == []
    corpus = {"dropped_by_source": {"news": {"short": 2, "language": 0}, "laws": {"language": 1}},
              "dropped_examples": {"short": ["Salam."], "language": ["Merhaba, nasılsınız?"]}}
    assert dropped_rows({"corpus": corpus}) == [
        {"source": "laws", "reason": "language", "documents": 1, "example": "Merhaba, nasılsınız?"},
        {"source": "news", "reason": "short", "documents": 2, "example": "Salam."}]
