"""The whole flow end to end on the tiny preset (a tiny random Llama), plus resume.

    .venv/bin/python -m pytest -q tests/test_flow.py

The flow runs as a real Metaflow process on the local datastore (a temp dir set in
conftest.py); the Metaflow client then reads every step's artifacts.
"""

from __future__ import annotations

from conftest import TINY_PRESET as TINY
from conftest import run_flow, run_id_of


def test_every_step_stores_its_artifacts(tiny_run):
    run, _ = tiny_run
    assert run.successful
    steps = {s.id for s in run}
    assert steps == {"start", "prepare_data", "train_tokenizer", "cpt_embeddings", "cpt_full", "join_cpt",
                     "sft_lora", "evaluate", "end"}
    data = run["end"].task.data
    assert data.environment_info["versions"]["torch"].startswith("2.")
    assert data.data_stats["corpus"]["train"]["documents"] > 0
    assert data.data_stats["sft"]["train"]["records"] > 0
    assert set(data.tokenizers) == {"baseline", "extend", "replace"}
    names = {row["tokenizer"] for row in data.fertility}
    assert "llama-3.2" in names
    assert set(data.cpt_models) == {"baseline", "extend", "replace"}
    assert set(data.arm_bpb) == {"base", "baseline", "extend", "replace"}
    assert all(0 < v < 20 for scores in data.arm_bpb.values() for v in scores.values())
    assert data.chosen_arm in data.cpt_models
    assert set(data.metrics) >= {"base", "cpt", "sft"}
    assert data.generations, "no generation samples"


def test_cpt_steps_trained(tiny_run):
    run, _ = tiny_run
    for task in run["cpt_full"]:
        metrics = task.data.full_metrics
        assert metrics["steps"] == 4
        assert len(metrics["history"]) >= 1
    trained = [t for t in run["cpt_embeddings"] if t.data.arm != "baseline"]
    assert trained and all(t.data.embeddings_metrics["steps"] == 4 for t in trained)


def test_run_prints_where_results_are(tiny_run):
    _, output = tiny_run
    assert "card view" in output


def test_bad_preset_fails_before_any_step(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[cpt]\nblok_size = 64\n')
    proc = run_flow("--config", "config", str(bad), "run", timeout=300)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "blok_size" in out and "unknown key" in out
    assert "Workflow starting" not in out


def test_resume_after_forced_failure(tiny_run):
    proc = run_flow("--config", "config", str(TINY), "run", env={"AZLLM_FAIL_AT_STEP": "sft_lora"})
    assert proc.returncode != 0
    failed_id = run_id_of(proc.stdout + proc.stderr)
    assert "failing step 'sft_lora' on purpose" in proc.stdout + proc.stderr
    resumed = run_flow("resume", "--origin-run-id", failed_id)
    assert resumed.returncode == 0, resumed.stdout[-4000:] + resumed.stderr[-8000:]
    from metaflow import Run, namespace

    namespace(None)
    run = Run(f"AzLLMFlow/{run_id_of(resumed.stdout + resumed.stderr)}")
    assert run.successful
    assert run["end"].task.data.chosen_arm
    # steps before the failure were cloned, not rerun
    assert "Cloning results of a previously run task" in resumed.stdout + resumed.stderr
