"""benchmarks/cpt_throughput.py on CPU: the tiny shape through the real CPT trainer, 1 + 2 steps.

Checks that every stdout line is JSON, that the runs report positive throughput, step time
and memory with finite losses, that the sweep records the largest batch and stops at the first
out-of-memory (simulated on CPU), and that Liger (CUDA only) is reported as skipped with a
reason rather than run. About 30 s on one CPU core.

Run: .venv/bin/python -m pytest -q tests/test_benchmarks.py
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "cpt_throughput.py"


def _bench_module():
    spec = importlib.util.spec_from_file_location("cpt_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench_lines(tmp_path_factory) -> list[dict]:
    work = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--shape", "tiny", "--steps", "2", "--warmup-steps", "1",
         "--batch-sizes", "1,2", "--configs", "plain,liger", "--work-dir", str(work)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, f"no output; stderr: {proc.stderr[-2000:]}"
    return [json.loads(line) for line in lines]  # every stdout line must be JSON


def test_runs_report_positive_numbers(bench_lines):
    runs = [r for r in bench_lines if r["record"] == "run" and r["config"] == "plain"]
    assert [r["batch"] for r in runs] == [1, 2], runs
    for r in runs:
        assert r["status"] == "ok", r
        assert r["device"] == ("cpu" if not torch.cuda.is_available() else r["device"])
        assert (r["seq"], r["vocab"], r["model_vocab"]) == (64, 1024, 1024)
        for key in ("tokens_per_s", "step_time_s", "peak_mem_gib", "num_params"):
            assert r[key] > 0, (key, r)
        assert math.isfinite(r["loss_first"]) and math.isfinite(r["loss_last"]), r
        # random tokens over 1,024 ids: the loss starts near ln(1024) = 6.93
        assert abs(r["loss_first"] - math.log(1024)) < 0.5, r
        assert r["timed_steps"] == 2
        assert r["liger_applied"] is False
        if not torch.cuda.is_available():
            assert r["mfu"] is None  # no peak FLOP/s for a CPU
    assert runs[-1]["largest_batch"] == 2


def test_sweep_lines(bench_lines):
    sweeps = {r["config"]: r for r in bench_lines if r["record"] == "sweep"}
    assert sweeps["plain"]["status"] == "ok" and sweeps["plain"]["largest_batch"] == 2
    assert sweeps["plain"]["tokens_per_s"] > 0
    if not torch.cuda.is_available():
        assert sweeps["liger"]["status"] == "skipped"
        assert "CUDA" in sweeps["liger"]["reason"]


def test_sweep_stops_at_out_of_memory(tmp_path):
    """A (simulated) torch.cuda.OutOfMemoryError at batch 2 ends the sweep; batch 1 is the largest."""
    bench = _bench_module()
    env = {**os.environ, "OMP_NUM_THREADS": "1", bench.FAKE_OOM_ENV: "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--shape", "tiny", "--steps", "1", "--warmup-steps", "0",
         "--batch-sizes", "1,2,4", "--configs", "plain", "--work-dir", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    runs = [r for r in lines if r["record"] == "run"]
    assert [(r["batch"], r["status"]) for r in runs] == [(1, "ok"), (2, "oom")], runs  # 4 is not tried
    assert "out of memory" in runs[1]["reason"]
    (sweep,) = [r for r in lines if r["record"] == "sweep"]
    assert sweep["largest_batch"] == 1 and sweep["batch"] == 1 and sweep["tokens_per_s"] > 0


def test_unknown_config_is_rejected(capsys):
    with pytest.raises(SystemExit):
        _bench_module().main(["--configs", "plain,turbo"])
    assert "turbo" in capsys.readouterr().err


def test_vocab_padding_matches_pipeline():
    bench = _bench_module()
    assert bench.padded_vocab(100_000, 64) == 100_032
    assert bench.padded_vocab(128_256, 64) == 128_256
