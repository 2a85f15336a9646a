"""Chat records: validation errors, reading with skip_bad_lines, prepare_sft splits, real SFT data.

    .venv/bin/python -m pytest -q tests/test_data_sft.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from azllm.config import DataConfig
from azllm.data.readers import BadLines, DataError
from azllm.data.sft import prepare_sft, read_chat_records, validate_chat_record


def chat(question: str, answer: str, system: str | None = None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    return {"messages": [*messages, {"role": "user", "content": question},
                         {"role": "assistant", "content": answer}]}


RECORDS = [chat(f"Sual {i}: {i} + {i} neçədir?", f"Cavab: {2 * i}.") for i in range(20)]


def write_jsonl(path: Path, records: list) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(path)


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_valid_record_is_normalised():
    record = chat("Salam", "Salam! Sizə necə kömək edə bilərəm?", system="Sən köməkçisən.")
    record["source"] = "test"
    record["messages"][1]["extra"] = 1
    out = validate_chat_record(record, "f.jsonl:1")
    assert out["source"] == "test"
    assert [m["role"] for m in out["messages"]] == ["system", "user", "assistant"]
    assert "extra" not in out["messages"][1]


@pytest.mark.parametrize(("record", "problem"), [
    ([], "must be a JSON object"),
    ({"text": "x"}, "'messages' must be a non-empty list"),
    ({"messages": []}, "'messages' must be a non-empty list"),
    ({"messages": ["hi"]}, r"messages\[0\]: must be an object"),
    ({"messages": [{"role": "bot", "content": "x"}]}, r"messages\[0\]: role 'bot' is not one of"),
    ({"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "x"}]},
     r"messages\[0\]: 'content' must be a non-empty string"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": 3}]},
     r"messages\[1\]: 'content' must be a non-empty string, got 3"),
    ({"messages": [{"role": "system", "content": "x"}, {"role": "assistant", "content": "y"}]},
     "no 'user' turn"),
    ({"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]},
     "last message must be from the assistant"),
])
def test_invalid_records_name_where_and_problem(record, problem):
    with pytest.raises(DataError, match=rf"^f\.jsonl:7: .*{problem}"):
        validate_chat_record(record, "f.jsonl:7")


def test_read_chat_records_errors_name_file_line(tmp_path):
    path = write_jsonl(tmp_path / "sft.jsonl", [RECORDS[0], {"messages": [{"role": "user", "content": "q"}]}])
    with pytest.raises(DataError, match=rf"{path}:2: the last message must be from the assistant"):
        read_chat_records(path)


def test_read_chat_records_skips_and_counts(tmp_path):
    path = tmp_path / "sft.jsonl"
    write_jsonl(path, RECORDS[:3] + [{"messages": []}])
    path.write_text(path.read_text(encoding="utf-8") + "{broken\n", encoding="utf-8")
    counter = BadLines()
    records = read_chat_records(str(path), skip_bad_lines=True, counter=counter)
    assert len(records) == 3
    assert counter.count == 2


def test_prepare_sft_hold_out_is_deterministic(tmp_path):
    src = write_jsonl(tmp_path / "sft.jsonl", RECORDS + RECORDS[:2])  # 2 exact duplicates
    cfg = DataConfig(sft_train=src, sft_validation_fraction=0.1)
    a, b = prepare_sft(cfg, tmp_path / "a"), prepare_sft(cfg, tmp_path / "b")
    assert read_lines(a.validation_path) == read_lines(b.validation_path)
    assert a.stats["validation"]["records"] == 2
    assert a.stats["train"]["records"] == 18
    assert a.stats["train"]["turns"] == 36
    train_q = {r["messages"][0]["content"] for r in read_lines(a.train_path)}
    assert not train_q & {r["messages"][0]["content"] for r in read_lines(a.validation_path)}


def test_prepare_sft_at_least_one_validation_record(tmp_path):
    src = write_jsonl(tmp_path / "sft.jsonl", RECORDS[:3])
    prepared = prepare_sft(DataConfig(sft_train=src, sft_validation_fraction=0.01), tmp_path / "out")
    assert prepared.stats["validation"]["records"] == 1
    assert prepared.stats["train"]["records"] == 2


def test_prepare_sft_explicit_validation_removes_overlap(tmp_path):
    train = write_jsonl(tmp_path / "t.jsonl", RECORDS)
    val = write_jsonl(tmp_path / "v.jsonl", RECORDS[:2])
    prepared = prepare_sft(DataConfig(sft_train=train, sft_validation=val), tmp_path / "out")
    assert prepared.stats["train"]["records"] == 18
    assert prepared.stats["dropped"]["validation_overlap"] == 2


def test_prepare_sft_failure_leaves_no_output(tmp_path):
    src = write_jsonl(tmp_path / "sft.jsonl", [*RECORDS, {"messages": "nope"}])
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"sft\.jsonl:21: field 'messages'"):
        prepare_sft(DataConfig(sft_train=src), out)
    assert not out.exists() or not list(out.iterdir())


def test_prepare_sft_real_data(shared_data, tmp_path):
    cfg = DataConfig(sft_train=str(shared_data / "az_sft" / "train.jsonl"),
                     sft_validation=str(shared_data / "az_sft" / "validation.jsonl"))
    prepared = prepare_sft(cfg, tmp_path)
    stats = prepared.stats
    assert stats["train"]["records"] > 1000 and stats["validation"]["records"] > 30
    assert 15_000 < stats["train"]["words"] + stats["validation"]["words"] < 35_000  # SOURCES.md: 24,698
    first = read_lines(prepared.train_path)[0]
    assert first["messages"][-1]["role"] == "assistant"
