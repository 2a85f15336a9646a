"""benchmarks/data_prepare.py on a 1 MB synthetic corpus, preparation only: JSON lines, and the
planted duplicates and foreign paragraphs are found (thresholds of issue 14; the input is ours).

    .venv/bin/python -m pytest -q tests/test_data_benchmark.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "az_corpus" / "train-00000.jsonl").exists(), reason="../shared/data is not present")
def test_data_prepare_benchmark_small(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "data_prepare.py"), "--size-mb", "1", "--workers", "1",
         "--shard-mb", "0.5", "--stages", "prepare", "--near-frac", "0.1", "--foreign-frac", "0.05",
         "--work-dir", str(tmp_path)],
        cwd=REPO, env={**os.environ, "AZLLM_CACHE": str(tmp_path / "cache")}, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    stages = {line["stage"]: line for line in lines if "stage" in line}
    assert set(stages) == {"generate", "prepare"}
    assert stages["prepare"]["shards"] >= 2 and stages["prepare"]["seconds"] > 0
    assert stages["prepare"]["peak_rss_gib"] > 0 and stages["prepare"]["disk_gib"] > 0
    final = lines[-1]
    assert final["near_dup_pairs_judged"] >= 20, final
    assert final["near_dup_recall"] >= 0.9 and final["near_dup_precision"] >= 0.9, final
    assert final["foreign_dropped"] >= 0.95 and final["azerbaijani_kept"] >= 0.9, final
    assert final["adjacent_copies"] == 0
