"""Readers, cleaning and stats: every local format, directories, globs, HF dispatch, bad input.

    .venv/bin/python -m pytest -q tests/test_data_readers.py

S3 is in test_data_s3.py (it needs a moto server).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from azllm.data.clean import clean_text, count_words, latin_fraction
from azllm.data.readers import (
    BadLines,
    DataError,
    is_hf_dataset_id,
    iter_documents,
    iter_jsonl_texts,
    iter_records,
)
from azllm.data.stats import corpus_stats, merge_stats

DOCS = ["Salam dünya, necəsən?", "Azərbaycan dili türk dillərindəndir.", "Üçüncü sənəd."]


def write_jsonl(path: Path, records: list, *, gz: bool = False) -> Path:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def write_parquet(path: Path, docs: list[str], *, gz: bool = False) -> Path:
    table = pa.table({"text": docs, "id": list(range(len(docs)))})
    if gz:
        tmp = path.with_suffix("")
        pq.write_table(table, tmp, row_group_size=2)
        path.write_bytes(gzip.compress(tmp.read_bytes()))
        tmp.unlink()
    else:
        pq.write_table(table, path, row_group_size=2)
    return path


# ---------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["c.jsonl", "c.json", "c.jsonl.gz", "c.json.gz"])
def test_jsonl_variants(tmp_path, name):
    path = write_jsonl(tmp_path / name, [{"text": d, "source": "x"} for d in DOCS], gz=name.endswith(".gz"))
    assert list(iter_documents(str(path))) == DOCS


@pytest.mark.parametrize("gz", [False, True])
def test_txt_is_one_document_per_nonempty_line(tmp_path, gz):
    text = DOCS[0] + "\n\n" + DOCS[1] + "\r\n" + DOCS[2] + "\n"
    path = tmp_path / ("c.txt.gz" if gz else "c.txt")
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    assert list(iter_documents(str(path))) == DOCS


@pytest.mark.parametrize("gz", [False, True])
def test_parquet_in_batches(tmp_path, gz):
    path = write_parquet(tmp_path / ("c.parquet.gz" if gz else "c.parquet"), DOCS, gz=gz)
    assert list(iter_documents(str(path))) == DOCS


def test_parquet_missing_column_names_it(tmp_path):
    path = write_parquet(tmp_path / "c.parquet", DOCS)
    with pytest.raises(DataError, match=r"c\.parquet: parquet file has no column\(s\) \['body'\]"):
        list(iter_documents(str(path), text_field="body"))


def test_custom_text_field(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"body": d} for d in DOCS])
    assert list(iter_documents(str(path), text_field="body")) == DOCS


def test_directory_is_recursive_and_sorted(tmp_path):
    write_jsonl(tmp_path / "b" / "2.jsonl", [{"text": DOCS[2]}])
    write_jsonl(tmp_path / "a.jsonl.gz", [{"text": DOCS[0]}], gz=True)
    write_parquet(tmp_path / "b" / "1.parquet", [DOCS[1]])
    (tmp_path / "notes.md").write_text("not a corpus file")
    assert list(iter_documents(str(tmp_path))) == DOCS


def test_glob(tmp_path):
    for i, d in enumerate(DOCS):
        write_jsonl(tmp_path / f"part-{i}.jsonl", [{"text": d}])
    write_jsonl(tmp_path / "other.jsonl", [{"text": "skip me, not matched"}])
    assert list(iter_documents(str(tmp_path / "part-*.jsonl"))) == DOCS


def test_iter_jsonl_texts_reads_prepared_files(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [{"text": d} for d in DOCS])
    assert list(iter_jsonl_texts(path)) == DOCS


def test_iter_records_gives_location(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [{"a": 1}, {"a": 2}])
    assert [w for w, _ in iter_records(str(path))] == [f"{path}:1", f"{path}:2"]


def test_real_shared_corpus_streams(shared_data):
    path = shared_data / "az_corpus" / "validation.jsonl"
    stats = corpus_stats(iter_documents(str(path)))
    assert stats["documents"] > 100
    assert stats["bytes"] >= stats["chars"] > 0  # Azerbaijani letters take 2 bytes


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


def test_malformed_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok document"}\n{"text": "broken\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}:2: invalid JSON"):
        list(iter_documents(str(path)))


def test_json_array_file_gets_a_hint(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('[\n  {"text": "a"}\n]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"c\.json:1: invalid JSON.*one object per line"):
        list(iter_documents(str(path)))


def test_bare_json_string_is_not_a_document(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", ["just a string"])
    with pytest.raises(DataError, match=rf"{path}:1: expected a JSON object with field 'text', got str"):
        list(iter_documents(str(path)))


def test_missing_field_names_file_line_and_field(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": "a"}, {"body": "b"}])
    with pytest.raises(DataError, match=rf"{path}:2: record has no field 'text'"):
        list(iter_documents(str(path)))


def test_non_string_field(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": 5}])
    with pytest.raises(DataError, match=rf"{path}:1: field 'text' must be a string, got int"):
        list(iter_documents(str(path)))


def test_invalid_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=rf"{path}:2: invalid UTF-8"):
        list(iter_documents(str(path)))


def test_skip_bad_lines_counts_them(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"text": "one"}\nnot json\n{"body": "x"}\n{"text": "caf\xe9"}\n[1]\n{"text": "two"}\n')
    counter = BadLines()
    assert list(iter_documents(str(path), skip_bad_lines=True, counter=counter)) == ["one", "two"]
    assert counter.count == 4
    assert counter.examples[0].startswith(f"{path}:2: invalid JSON")


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="no such file or directory"):
        list(iter_documents(str(tmp_path / "nope.jsonl")))


def test_glob_without_matches(tmp_path):
    with pytest.raises(DataError, match="no supported files"):
        list(iter_documents(str(tmp_path / "*.jsonl")))


def test_empty_directory(tmp_path):
    with pytest.raises(DataError, match="directory has no supported files"):
        list(iter_documents(str(tmp_path)))


def test_unsupported_suffix(tmp_path):
    (tmp_path / "c.csv").write_text("text\nx\n")
    with pytest.raises(DataError, match="unsupported format"):
        list(iter_documents(str(tmp_path / "c.csv")))


# ---------------------------------------------------------------------------
# Hugging Face datasets
# ---------------------------------------------------------------------------


def test_hf_id_dispatch():
    assert is_hf_dataset_id("hf://owner/name")
    assert is_hf_dataset_id("allmalab/az-corpus:train")
    assert not is_hf_dataset_id("data/corpus.jsonl")  # a missing file, not a dataset
    assert not is_hf_dataset_id("data/sample/corpus.jsonl")
    assert not is_hf_dataset_id("s3://bucket/key")


def test_hf_streaming_from_local_data_dir(tmp_path, monkeypatch):
    """`load_dataset` streams a directory of data files offline: the real HF code path, no hub."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    write_jsonl(tmp_path / "ds" / "train.jsonl", [{"text": d} for d in DOCS])
    assert list(iter_documents(f"hf://{tmp_path / 'ds'}")) == DOCS
    assert list(iter_documents(f"hf://{tmp_path / 'ds'}:train")) == DOCS


def test_hf_id_offline_is_a_data_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="not an existing local path, and cannot load Hugging Face"):
        list(iter_documents("no-such-owner/no-such-dataset"))


# ---------------------------------------------------------------------------
# Cleaning and stats
# ---------------------------------------------------------------------------


def test_clean_text():
    decomposed = "Ə" + "s\u0327"  # s + combining cedilla -> ş
    assert clean_text(f"  {decomposed}\x00 a\t\t b\u00a0 c\r\nd\n\n\n\n\ne  ") == "Əş a b c\nd\n\ne"
    assert clean_text("line one   \n   line two") == "line one\nline two"
    assert clean_text("a\rb") == "a\nb"


def test_latin_fraction():
    assert latin_fraction("Salam dünya") == 1.0
    assert latin_fraction("Салам dünya") == pytest.approx(5 / 10)
    assert latin_fraction("123 ...") == 0.0


def test_count_words_is_split_after_nfc():
    assert count_words("Salam  dünya\nnecəsən") == 3
    assert count_words("") == 0


def test_corpus_stats_merge():
    a, b = corpus_stats(DOCS[:1]), corpus_stats(DOCS[1:])
    whole = corpus_stats(DOCS)
    assert merge_stats(a, b) == whole
    assert whole["documents"] == 3
    assert whole["bytes"] == sum(len(d.encode()) for d in DOCS)
    assert whole["words"] == sum(len(d.split()) for d in DOCS)
