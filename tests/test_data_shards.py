"""Sharded preparation: cuts at line starts, line numbers in errors, reuse of finished shards, a
killed shard redone, 1 and 2 workers byte-identical.

    .venv/bin/python -m pytest -q tests/test_data_shards.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from azllm.config import DataConfig, QualityConfig
from azllm.data.corpus import prepare_corpus
from azllm.data.readers import BadLines, DataError, iter_documents
from azllm.data.shards import available_cpus, iter_shard_documents, plan_shards

WORDS = ("kitab", "məktəb", "dəniz", "şəhər", "bağ", "yol", "çay", "gül", "dağ", "ev", "qələm", "ağac")


def doc(i: int) -> str:
    """A distinct document per i: the words are picked by i's digits, so no two are near-duplicates."""
    picked = [WORDS[(i * 7 + k * (i % 5 + 1)) % len(WORDS)] + str(i * 31 + k) for k in range(12)]
    return f"Sənəd {i}: " + " ".join(picked) + "."


def write_docs(path: Path, n: int, bad_line: int = 0) -> Path:
    lines = [json.dumps({"text": doc(i)}, ensure_ascii=False) for i in range(n)]
    if bad_line:
        lines[bad_line - 1] = "{not json"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def cfg(path: Path, work: Path, **kw) -> DataConfig:
    """Language ID and quality filters off (these are not prose); MinHash on."""
    base = {"corpus": (str(path),), "shard_mb": 0.02, "num_workers": 1, "work_dir": str(work),
            "langid": False, "quality": QualityConfig(enabled=False)}
    return DataConfig(**{**base, **kw})


def outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def done_markers(work: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in work.glob("*/done.json")}


def test_shards_cut_at_line_starts_and_count_lines(tmp_path):
    path = write_docs(tmp_path / "c.jsonl", 600)
    shards = plan_shards([("corpus", 0, str(path))], shard_mb=0.01)  # ~10 KB each
    assert len(shards) > 3
    assert [s.start for s in shards[1:]] == [s.end for s in shards[:-1]]
    assert shards[-1].end == path.stat().st_size
    texts = [t for s in shards for t in iter_shard_documents(s, text_field="text", skip_bad_lines=False,
                                                              counter=BadLines())]
    assert texts == list(iter_documents(str(path)))
    lines = path.read_bytes().split(b"\n")
    for s in shards:
        assert json.loads(lines[s.first_line - 1])["text"] == next(
            iter_shard_documents(s, text_field="text", skip_bad_lines=False, counter=BadLines()))


def test_bad_line_in_a_later_shard_names_file_and_line(tmp_path):
    path = write_docs(tmp_path / "c.jsonl", 600, bad_line=451)
    with pytest.raises(DataError, match=rf"{path}:451: invalid JSON"):
        prepare_corpus(cfg(path, tmp_path / "work"), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    stats = prepare_corpus(cfg(path, tmp_path / "work", skip_bad_lines=True), tmp_path / "out").stats
    assert stats["dropped"]["bad_lines"] == 1
    assert f"{path}:451" in stats["bad_line_examples"][0]


def test_rerun_reuses_finished_shards_and_a_killed_one_is_redone(tmp_path):
    path = write_docs(tmp_path / "c.jsonl", 400)
    work = tmp_path / "work"
    first = prepare_corpus(cfg(path, work), tmp_path / "o1")
    assert first.stats["shards"] > 2
    markers = done_markers(work)
    prepare_corpus(cfg(path, work), tmp_path / "o2")
    assert done_markers(work) == markers  # nothing redone
    assert outputs(tmp_path / "o2") == outputs(tmp_path / "o1")

    killed = sorted(markers)[1]  # as if killed mid-shard: no marker, half a docs.jsonl
    (work / killed / "done.json").unlink()
    (work / killed / "docs.jsonl").write_text('{"text": "yarım', encoding="utf-8")
    prepare_corpus(cfg(path, work), tmp_path / "o3")
    again = done_markers(work)
    assert [k for k in markers if again.get(k) != markers[k]] == [killed]
    assert outputs(tmp_path / "o3") == outputs(tmp_path / "o1")

    prepare_corpus(cfg(path, work, validation_fraction=0.2, num_workers=2), tmp_path / "o4")
    assert done_markers(work) == again  # split and pool size: the shards do not depend on them
    prepare_corpus(cfg(path, work, min_chars=30), tmp_path / "o5")  # a filter setting: other shards
    assert len(done_markers(work)) == 2 * len(markers)


def test_two_workers_give_the_same_files_as_one(tmp_path):
    path = write_docs(tmp_path / "c.jsonl", 400)
    prepare_corpus(cfg(path, tmp_path / "w1", num_workers=1), tmp_path / "o1")
    prepare_corpus(cfg(path, tmp_path / "w2", num_workers=2), tmp_path / "o2")
    assert outputs(tmp_path / "o1") == outputs(tmp_path / "o2")
    assert available_cpus() >= 1
