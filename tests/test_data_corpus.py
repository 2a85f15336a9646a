"""prepare_corpus: cleaning, filters, dedup, weights, deterministic split, atomic outputs, real data.

    .venv/bin/python -m pytest -q tests/test_data_corpus.py
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from azllm.config import DataConfig, QualityConfig
from azllm.data.corpus import copies_for, prepare_corpus
from azllm.data.readers import DataError, iter_jsonl_texts


@pytest.fixture(autouse=True)
def _shard_cache(tmp_path, monkeypatch):
    """Finished shards go to this test's directory, not the shared AZLLM_CACHE."""
    monkeypatch.setenv("AZLLM_CACHE", str(tmp_path / "cache"))


def plain(**kw) -> DataConfig:
    """The settings of these tests' one-line documents: language ID, quality filters and MinHash off
    (tests/test_data_filters.py covers those on real text)."""
    return DataConfig(langid=False, quality=QualityConfig(enabled=False), near_dedup=False, num_workers=1, **kw)


def make_docs(n: int, tag: str = "") -> list[str]:
    return [f"Bu {tag}{i} nömrəli sənəddir və kifayət qədər uzundur." for i in range(n)]


def write_jsonl(path: Path, texts: list[str]) -> str:
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts),
                    encoding="utf-8")
    return str(path)


def read(path: Path) -> list[str]:
    return list(iter_jsonl_texts(path))


def test_clean_filter_dedup_counts(tmp_path):
    docs = make_docs(40) + [
        "qısa",                                      # too_short
        "Это русский текст, не азербайджанский.",    # non_latin
        make_docs(1)[0],                             # exact duplicate
        "  " + make_docs(2)[1].replace(" ", "   ") + "\x00 ",  # duplicate once cleaned
    ]
    src = write_jsonl(tmp_path / "c.jsonl", docs)
    prepared = prepare_corpus(plain(corpus=(src,), validation_fraction=0.2), tmp_path / "out")
    dropped = prepared.stats["dropped"]
    assert dropped == {"too_short": 1, "non_latin": 1, "duplicate": 2, "bad_lines": 0}
    train, val = read(prepared.train_path), read(prepared.validation_path)
    assert sorted(train + val) == sorted(make_docs(40))
    assert val and train
    assert prepared.stats["train"]["documents"] == len(train)
    assert prepared.stats["validation"]["documents"] == len(val)
    assert prepared.other_domain_path is None


def test_split_is_deterministic_and_seeded(tmp_path):
    src = write_jsonl(tmp_path / "c.jsonl", make_docs(200))
    runs = [prepare_corpus(plain(corpus=(src,), seed=seed), tmp_path / f"o{i}")
            for i, seed in enumerate((1, 1, 2))]
    assert read(runs[0].validation_path) == read(runs[1].validation_path)
    assert read(runs[0].train_path) == read(runs[1].train_path)
    assert read(runs[0].validation_path) != read(runs[2].validation_path)
    assert 2 <= len(read(runs[0].validation_path)) <= 25  # ~5 % of 200


def test_weights_repeat_and_subsample(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", make_docs(30, "a"))
    b = write_jsonl(tmp_path / "b.jsonl", make_docs(10, "b"))
    c = write_jsonl(tmp_path / "c.jsonl", make_docs(400, "c"))
    v = write_jsonl(tmp_path / "v.jsonl", ["Ayrıca yoxlama sənədi burada yazılıb."])
    cfg = plain(corpus=(a, b, c), corpus_weights=(1.0, 3.0, 0.25), validation=(v,))
    prepared = prepare_corpus(cfg, tmp_path / "out")
    counts = Counter(read(prepared.train_path))
    assert all(counts[d] == 1 for d in make_docs(30, "a"))
    assert all(counts[d] == 3 for d in make_docs(10, "b"))
    kept_c = [d for d in make_docs(400, "c") if counts[d]]
    assert 60 <= len(kept_c) <= 140  # a quarter of 400, decided by hash
    assert prepared.stats["train"]["documents"] == 30 + 30 + len(kept_c)
    assert copies_for(2.5, 0, b"x") in (2, 3)


def test_explicit_validation_is_kept_and_removed_from_train(tmp_path):
    docs = make_docs(20)
    src = write_jsonl(tmp_path / "c.jsonl", docs)
    val = write_jsonl(tmp_path / "v.jsonl", docs[:3] + ["Yalnız yoxlama üçün olan sənəd."])
    prepared = prepare_corpus(plain(corpus=(src,), validation=(val,)), tmp_path / "out")
    assert read(prepared.validation_path) == docs[:3] + ["Yalnız yoxlama üçün olan sənəd."]
    assert sorted(read(prepared.train_path)) == sorted(docs[3:])  # hash-ordered shuffle
    assert prepared.stats["dropped"]["duplicate"] == 3


def test_other_domain_file(tmp_path):
    src = write_jsonl(tmp_path / "c.jsonl", make_docs(30))
    other = write_jsonl(tmp_path / "news.jsonl", make_docs(4, "xəbər"))
    prepared = prepare_corpus(plain(corpus=(src,), other_domain=other), tmp_path / "out")
    assert read(prepared.other_domain_path) == make_docs(4, "xəbər")
    assert prepared.stats["other_domain"]["documents"] == 4


def test_max_documents(tmp_path):
    src = write_jsonl(tmp_path / "c.jsonl", make_docs(100))
    prepared = prepare_corpus(plain(corpus=(src,), max_documents=20), tmp_path / "out")
    total = prepared.stats["train"]["documents"] + prepared.stats["validation"]["documents"]
    assert total == 20
    assert prepared.stats["sources"][0]["read"] == 20


def test_small_corpus_still_gets_a_validation_document(tmp_path):
    src = write_jsonl(tmp_path / "c.jsonl", make_docs(5))
    prepared = prepare_corpus(plain(corpus=(src,), corpus_weights=(2.0,), validation_fraction=0.01),
                              tmp_path / "out")
    val, train = read(prepared.validation_path), read(prepared.train_path)
    assert len(val) == 1 and val[0] not in train
    assert len(train) == 8  # 4 documents x weight 2
    assert prepared.stats["train"]["documents"] == 8


def test_empty_after_cleaning_names_sources_and_drops(tmp_path):
    src = write_jsonl(tmp_path / "c.jsonl", ["qısa", "da qısa", "Это русский текст, совсем не латиница."])
    with pytest.raises(DataError, match=r"no training documents left .*c\.jsonl.*'too_short': 2, 'non_latin': 1"):
        prepare_corpus(plain(corpus=(src,)), tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())


def test_empty_validation_suggests_fraction(tmp_path):
    src = write_jsonl(tmp_path / "c.jsonl", make_docs(10))
    val = write_jsonl(tmp_path / "v.jsonl", ["qısa"])
    with pytest.raises(DataError, match=r"validation split is empty: validation sources .*v\.jsonl.*"
                                        "raise data.validation_fraction"):
        prepare_corpus(plain(corpus=(src,), validation=(val,)), tmp_path / "out")


def test_single_document_cannot_be_split(tmp_path):
    src = write_jsonl(tmp_path / "c.jsonl", make_docs(1))
    with pytest.raises(DataError, match="validation split is empty|1 held out for validation"):
        prepare_corpus(plain(corpus=(src,)), tmp_path / "out")


def test_failure_in_second_source_leaves_no_output(tmp_path):
    good = write_jsonl(tmp_path / "good.jsonl", make_docs(50))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": make_docs(1, "z")[0]}) + "\n{not json\n", encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(DataError, match=rf"{bad}:2: invalid JSON"):
        prepare_corpus(plain(corpus=(good, str(bad))), out)
    assert not out.exists() or list(out.iterdir()) == []  # no train.jsonl, and no temp files either


def test_skip_bad_lines_counts(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_bytes(Path(write_jsonl(tmp_path / "g.jsonl", make_docs(30))).read_bytes() + b"{bad\n\xff\n")
    prepared = prepare_corpus(plain(corpus=(str(src),), skip_bad_lines=True), tmp_path / "out")
    assert prepared.stats["dropped"]["bad_lines"] == 2
    assert len(prepared.stats["bad_line_examples"]) == 2


def test_missing_source(tmp_path):
    with pytest.raises(DataError, match="no such file or directory"):
        prepare_corpus(plain(corpus=(str(tmp_path / "missing.jsonl"),)), tmp_path / "out")


def test_real_corpus_sample(shared_data, tmp_path):
    cfg = plain(corpus=(str(shared_data / "az_corpus" / "train-00000.jsonl"),), max_documents=300)
    prepared = prepare_corpus(cfg, tmp_path)
    train, val = prepared.stats["train"], prepared.stats["validation"]
    assert prepared.stats["sources"][0]["read"] == 300
    assert 250 <= train["documents"] + val["documents"] + sum(prepared.stats["dropped"].values()) <= 300
    assert train["documents"] > 200 and 3 <= val["documents"] <= 40
    assert 20 < train["words"] / train["documents"] < 2000  # legal articles and Wikipedia sentences
    assert 1.0 < train["bytes"] / train["chars"] < 1.3  # mostly ASCII plus 2-byte Azerbaijani letters
    assert all("ə" in t or "Ə" in t for t in list(iter_jsonl_texts(prepared.train_path))[:5])


# ---------------------------------------------------------------------------
# CLI (`azllm data ...`), through a parser built the way azllm/cli.py builds it
# ---------------------------------------------------------------------------


def run_cli(argv: list[str]) -> int:
    import argparse

    from azllm.data.cli import register

    parser = argparse.ArgumentParser(prog="azllm")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_stats_json(tmp_path, capsys):
    src = write_jsonl(tmp_path / "c.jsonl", make_docs(4))
    assert run_cli(["data", "stats", src, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["documents"] == 4 and out["words"] == 4 * 8 and out["mb"] > 0


def test_cli_stats_error_exit_code(tmp_path, capsys):
    from azllm.cli import main  # the one error boundary: bad input is one line on stderr, exit 2

    assert main(["data", "stats", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_cli_prepare(tmp_path, capsys):
    corpus = write_jsonl(tmp_path / "c.jsonl", make_docs(30))
    sft = tmp_path / "sft.jsonl"
    sft.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Sual {i}"},
                                                    {"role": "assistant", "content": f"Cavab {i}"}]}) + "\n"
                           for i in range(10)), encoding="utf-8")
    preset = tmp_path / "p.toml"
    preset.write_text(f'[data]\ncorpus = ["{corpus}"]\nsft_train = "{sft}"\nlangid = false\n'
                      '[data.quality]\nenabled = false\n', encoding="utf-8")
    assert run_cli(["data", "prepare", "--config", str(preset), "--out", str(tmp_path / "out")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["sft"]["validation"]["records"] == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "sft_train.jsonl", "sft_validation.jsonl", "train.jsonl", "validation.jsonl"]
