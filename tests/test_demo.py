"""The quick start's flow run: the default preset (configs/demo.toml, the real SmolLM2-135M on
the bundled sample data, CPU) must lower validation bits per byte from the base model.

About 15 min on 2 cores, the longest test; it is also the check that `make demo` works. The run is
the session fixture `demo_run` (conftest.py), which tests/test_export.py also exports.

    .venv/bin/python -m pytest -q tests/test_demo.py
"""

from __future__ import annotations

MARGIN = 0.10
"""The chosen arm must be at least 10 % below the base model (measured: 3.036 -> 2.084)."""


def test_default_preset_lowers_validation_bpb(demo_run):
    run, output = demo_run  # no --config: the default preset, as the quick start runs it
    data = run["end"].task.data
    assert "'demo'" in output
    bpb = {name: scores["validation"] for name, scores in data.arm_bpb.items()}
    print(f"demo validation BPB: {bpb}, chosen {data.chosen_arm}")
    base = bpb.pop("base")
    assert set(bpb) == {"baseline", "extend", "replace"}
    for arm, value in bpb.items():
        assert value < base, f"CPT of arm {arm!r} did not lower BPB: {value:.4f} vs base {base:.4f}"
    assert data.chosen_arm == min(bpb, key=bpb.get)
    assert bpb[data.chosen_arm] <= (1 - MARGIN) * base, (bpb, base)
    # the SFT assistant loss went down on held-out chat records
    sft = data.sft_metrics
    assert sft["eval_assistant_loss_after"] < sft["eval_assistant_loss_before"], sft
    # the demo preset's preference stage: a few DPO steps on pairs the run built from its own SFT samples
    pref = data.preference_metrics
    assert pref["method"] == "dpo" and pref["pairs_source"] == "run" and pref["global_step"] == 4, pref
    assert pref["num_pairs"] > 0 and set(data.metrics) >= {"sft", "preference"}


def test_demo_scores_its_tasks_for_every_model_and_shows_them(demo_run):
    """`[eval] tasks` inside the flow (lm-evaluation-harness): join_cpt scores base and every arm,
    evaluate scores base, CPT, SFT and the preference stage, on the same SIB-200 sentences."""
    import pytest
    from test_cards import card_payload, default_card_html, user_components

    from azllm.config import load_pipeline_config
    from azllm.report.model_card import _tasks_section

    run, _ = demo_run
    cfg = load_pipeline_config("demo")
    arm_rows = run["join_cpt"].task.data.arm_task_scores
    rows = run["evaluate"].task.data.task_scores
    for picked, models in ((arm_rows, {"base", *cfg.cpt.arms}), (rows, {"base", "cpt", "sft", "preference"})):
        primary = [r for r in picked if r["primary"]]
        assert {r["model"] for r in primary} == models and {r["task"] for r in primary} == set(cfg.eval.tasks)
        assert all(r["n"] == cfg.eval.limit and r["chance"] == pytest.approx(1 / 7) for r in primary)
        assert all(0 <= r["value"] <= 1 and r["stderr"] is not None for r in primary)
    base_arm = next(r for r in arm_rows if r["model"] == "base" and r["primary"])
    base_eval = next(r for r in rows if r["model"] == "base" and r["primary"])
    assert base_arm["value"] == base_eval["value"]  # the same model on the same documents: the same score
    section = _tasks_section(arm_rows, rows)
    assert "## Tasks: base vs CPT vs SFT" in section and "## Tasks: base vs arms" in section
    from azllm.runs.explore import task_scores_table  # the notebook's table

    table = task_scores_table(run)
    expected = ({("join_cpt", m) for m in ("base", *cfg.cpt.arms)}
                | {("evaluate", m) for m in ("base", "cpt", "sft", "preference")})
    assert set(zip(table["step"], table["model"], strict=True)) == expected
    assert {"value", "stderr", "chance", "n"} <= set(table.columns)
    for step in ("join_cpt", "evaluate"):
        components = user_components(card_payload(default_card_html(run[step].task)))
        kinds = [c["type"] for c in components]
        heading = next(i for i, c in enumerate(components)
                       if c["type"] == "markdown" and c.get("source", "").startswith("## Tasks (lm-evaluation-harness"))
        assert kinds[heading + 1:heading + 3] == ["table", "image"], (step, kinds)
