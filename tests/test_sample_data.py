"""Checks on the bundled demonstration data in data/sample (real reads of the files)."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "sample"
CORPUS = SAMPLE_DIR / "corpus.jsonl"
SFT = SAMPLE_DIR / "sft.jsonl"
README = SAMPLE_DIR / "README.md"

CYRILLIC = re.compile(r"[\u0400-\u04FF\u0500-\u052F]")
AZ_LETTERS = set("əƏğĞıİöÖüÜçÇşŞ")


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            assert line.strip(), f"{path.name}:{lineno} is an empty line"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:  # pragma: no cover - failure path
                pytest.fail(f"{path.name}:{lineno} is not valid JSON: {exc}")
            assert isinstance(obj, dict), f"{path.name}:{lineno} is not a JSON object"
            records.append(obj)
    return records


@pytest.fixture(scope="module")
def corpus() -> list[dict]:
    return _read_jsonl(CORPUS)


@pytest.fixture(scope="module")
def sft() -> list[dict]:
    return _read_jsonl(SFT)


def _sft_texts(rec: dict) -> list[str]:
    return [m["content"] for m in rec["messages"]]


# --- corpus -----------------------------------------------------------------


def test_corpus_records_have_text_and_source(corpus):
    assert corpus, "corpus.jsonl is empty"
    for i, rec in enumerate(corpus):
        assert isinstance(rec.get("text"), str) and rec["text"].strip(), f"record {i} has empty text"
        assert isinstance(rec.get("source"), str) and rec["source"].startswith("azllm_sample_"), i


def test_corpus_size_at_least_100kb(corpus):
    total = sum(len(rec["text"].encode("utf-8")) for rec in corpus)
    assert total >= 100 * 1024, f"only {total} bytes of corpus text"


def test_corpus_document_lengths(corpus):
    for i, rec in enumerate(corpus):
        assert 300 <= len(rec["text"]) <= 2000, f"record {i} has {len(rec['text'])} characters"


def test_corpus_no_duplicate_documents(corpus):
    texts = [rec["text"] for rec in corpus]
    assert len(texts) == len(set(texts))


def test_corpus_is_azerbaijani_latin(corpus):
    with_schwa = sum("ə" in rec["text"] for rec in corpus)
    assert with_schwa / len(corpus) > 0.9
    for i, rec in enumerate(corpus):
        text = rec["text"]
        assert not CYRILLIC.search(text), f"record {i} contains Cyrillic characters"
        assert unicodedata.normalize("NFC", text) == text, f"record {i} is not NFC-normalised"
        assert AZ_LETTERS & set(text), f"record {i} has no Azerbaijani-specific letters"


# --- SFT --------------------------------------------------------------------


def test_sft_count(sft):
    assert len(sft) >= 300


def test_sft_structure(sft):
    for i, rec in enumerate(sft):
        msgs = rec.get("messages")
        assert isinstance(msgs, list) and len(msgs) in (2, 3), f"record {i}"
        if len(msgs) == 3:
            assert msgs[0]["role"] == "system" and msgs[0]["content"].strip(), i
        assert msgs[-2]["role"] == "user", f"record {i}: expected user turn"
        assert msgs[-1]["role"] == "assistant", f"record {i}: expected assistant turn last"
        for m in msgs:
            assert isinstance(m.get("content"), str) and m["content"].strip(), f"record {i} has empty content"
        assert rec.get("source", "").startswith("azllm_sample_sft_"), i


def test_sft_no_duplicate_questions(sft):
    questions = [rec["messages"][-2]["content"].strip().lower() for rec in sft]
    dups = {q for q in questions if questions.count(q) > 1}
    assert not dups, f"duplicate questions: {sorted(dups)[:5]}"


def test_sft_is_azerbaijani_latin(sft):
    with_schwa = sum(any("ə" in t for t in _sft_texts(rec)) for rec in sft)
    assert with_schwa / len(sft) > 0.9
    for i, rec in enumerate(sft):
        for t in _sft_texts(rec):
            assert not CYRILLIC.search(t), f"record {i} contains Cyrillic characters"
            assert unicodedata.normalize("NFC", t) == t, f"record {i} is not NFC-normalised"


def test_readme_labels_data_as_fictional():
    text = README.read_text(encoding="utf-8").lower()
    assert "fictional" in text and "apache-2.0" in text
