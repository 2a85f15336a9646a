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
