"""The tokenizer's bounded training sample (`[tokenizer] sample_mb`): unique documents, the same rate
for every source, deterministic.

    .venv/bin/python -m pytest -q tests/test_data_tokenizer_sample.py
"""

from __future__ import annotations

import json

import pytest

from azllm.config import ConfigError, TokenizerConfig
from azllm.tokenizer.train import sample_texts


def test_sample_is_bounded_unique_deterministic_and_even_across_sources(tmp_path):
    a = [f"Mənbə A, sənəd {i}: " + "söz " * 40 for i in range(400)]
    b = [f"Mənbə B, sənəd {i}: " + "kəlmə " * 40 for i in range(400)]
    lines = [json.dumps({"text": t}, ensure_ascii=False) for t in a + b + b[:100]]  # b[:100]: weighted copies
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    size_mb = path.stat().st_size / 1e6
    sample = list(sample_texts(path, size_mb / 4, show_progress=False))
    assert sample == list(sample_texts(path, size_mb / 4, show_progress=False))
    assert len(set(sample)) == len(sample)
    assert 140 <= len(sample) <= 260  # a quarter of 900 lines' bytes, copies not counted twice
    from_a = sum(t.startswith("Mənbə A") for t in sample)
    assert 0.35 <= from_a / len(sample) <= 0.65
    everything = list(sample_texts(path, 0, show_progress=False))
    assert sorted(everything) == sorted(a + b)


def test_sample_mb_config():
    assert TokenizerConfig().sample_mb == 2000.0
    with pytest.raises(ConfigError, match="sample_mb must be >= 0"):
        TokenizerConfig(sample_mb=-1)
