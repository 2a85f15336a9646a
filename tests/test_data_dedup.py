"""Dedup across shards (exact, MinHash), decontamination, weighted shuffle without adjacent copies,
validation cap.

    .venv/bin/python -m pytest -q tests/test_data_dedup.py
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from azllm.config import DataConfig, QualityConfig
from azllm.data.corpus import prepare_corpus
from azllm.data.dedup import DocRef
from azllm.data.mix import train_order
from azllm.data.readers import iter_jsonl_texts

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED / "az_corpus" / "train-00000.jsonl").exists(),
                                  reason="../shared/data is not present")


def write_jsonl(path: Path, texts: list[str]) -> str:
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return str(path)


def real_docs(n: int, min_words: int = 120) -> list[str]:
    """The first n legal articles of the shared corpus with at least `min_words` words."""
    out = []
    with open(SHARED / "az_corpus" / "train-00000.jsonl", encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"]
            if len(text.split()) >= min_words and text not in out:
                out.append(text)
            if len(out) == n:
                return out
    return out


def near_copy(text: str, k: int) -> str:
    """Every 100th word changed: a near-duplicate (Jaccard of word 5-grams ~0.9, which 14 bands x 8
    rows find with probability > 0.999; at 0.75 it would be ~0.77)."""
    words = text.split(" ")
    return " ".join(f"{w}{k}" if i % 100 == 7 else w for i, w in enumerate(words))


def cfg(tmp_path: Path, corpus: tuple[str, ...], **kw) -> DataConfig:
    return DataConfig(corpus=corpus, num_workers=1, shard_mb=0.05, work_dir=str(tmp_path / "work"), langid=False,
                      quality=QualityConfig(enabled=False), **kw)


def read(path: Path) -> list[str]:
    return list(iter_jsonl_texts(path))


@needs_shared
def test_near_and_exact_duplicates_across_shards(tmp_path):
    docs = real_docs(30)
    planted = [near_copy(d, 1) for d in docs[:10]] + [near_copy(d, 2) for d in docs[:5]] + docs[10:15]
    src = write_jsonl(tmp_path / "c.jsonl", docs + planted)  # ~0.2 MB: several shards
    prepared = prepare_corpus(cfg(tmp_path, (src,)), tmp_path / "out")
    kept = read(prepared.train_path) + read(prepared.validation_path)
    assert sorted(kept) == sorted(docs)
    stats = prepared.stats
    assert stats["shards"] > 1
    assert stats["dropped"]["duplicate"] == 5
    assert stats["dropped"]["near_duplicate"] == 15
    assert stats["near_duplicates"]["size_histogram"] == {"2": 5, "3": 5}
    assert stats["near_duplicates"]["clusters"] == 10


@needs_shared
def test_train_documents_sharing_13_grams_with_evaluation_text_are_dropped(tmp_path):
    docs = real_docs(20)
    val_text = "Bu yoxlama mətnidir və onun on üç sözlük parçası öyrədilən mətnə düşməməlidir heç vaxt ."
    twelve = " ".join(val_text.split()[:12])
    leaked, safe = docs[0] + " " + val_text, docs[1] + " " + twelve
    src = write_jsonl(tmp_path / "c.jsonl", [leaked, safe] + docs[2:])
    val = write_jsonl(tmp_path / "v.jsonl", [val_text])
    prepared = prepare_corpus(cfg(tmp_path, (src,), validation=(val,)), tmp_path / "out")
    train = read(prepared.train_path)
    assert leaked not in train and safe in train
    assert prepared.stats["dropped"]["contaminated"] == 1


def test_weighted_copies_are_never_adjacent(tmp_path):
    docs = [f"Sənəd {i}: {' '.join(f'söz{i * 13 + k}' for k in range(8))}." for i in range(6)]
    a = write_jsonl(tmp_path / "a.jsonl", docs)
    b = write_jsonl(tmp_path / "b.jsonl", ["Tək sənəd, amma üç dəfə: " + " ".join(f"x{k}" for k in range(9))])
    v = write_jsonl(tmp_path / "v.jsonl", ["Yoxlama sənədi burada yazılıb, ayrıca."])
    prepared = prepare_corpus(cfg(tmp_path, (a, b), corpus_weights=(1.0, 3.0), validation=(v,)), tmp_path / "out")
    train = read(prepared.train_path)
    assert Counter(train)[read(Path(b))[0]] == 3 and len(train) == 9
    assert all(x != y for x, y in zip(train, train[1:])), train


def test_train_order_moves_copies_apart():
    refs = {name: DocRef(Path("."), 0, 0, name.encode() * 20, i) for i, name in enumerate("ab")}
    order = train_order([refs["a"], refs["b"]], DataConfig(corpus=("x", "y"), corpus_weights=(3.0, 2.0)))
    digests = [r.digest for r in order]
    assert Counter(digests) == {refs["a"].digest: 3, refs["b"].digest: 2}
    assert all(x != y for x, y in zip(digests, digests[1:])), digests


def test_validation_cap_keeps_the_lowest_hashes(tmp_path):
    docs = [f"Sənəd nömrə {i}: " + " ".join(f"söz{i * 17 + k}" for k in range(8)) for i in range(200)]
    src = write_jsonl(tmp_path / "c.jsonl", docs)
    capped = prepare_corpus(cfg(tmp_path, (src,), validation_fraction=0.2, max_validation_documents=5),
                            tmp_path / "capped")
    full = prepare_corpus(cfg(tmp_path, (src,), validation_fraction=0.2), tmp_path / "full")
    val, val_full = read(capped.validation_path), read(full.validation_path)
    assert len(val) == 5 < len(val_full)
    assert set(val) <= set(val_full)
    assert len(read(capped.train_path)) == 195


def _ngrams(text: str, n: int = 13) -> set[tuple[str, ...]]:
    from azllm.data.dedup import words_of

    words = words_of(text)
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


@needs_shared
@pytest.mark.parametrize("ngram", [13, 0])
def test_train_shares_no_13_gram_with_the_hash_held_out_validation(tmp_path, ngram):
    """Pairs of different real articles carry the same 40-word paragraph (a syndicated passage):
    MinHash keeps both, so when one lands in the hash-chosen validation the other must leave train.
    With decontamination off (0) the overlap is there: the check is not vacuous."""
    docs = real_docs(60)
    pairs = [(docs[2 * i], docs[2 * i + 1], " ".join(docs[40 + i].split()[:40])) for i in range(20)]
    texts = [f"{a}\n{shared}" for a, _, shared in pairs] + [f"{b}\n{shared}" for _, b, shared in pairs]
    cfg = DataConfig(corpus=(write_jsonl(tmp_path / "az.jsonl", texts),), num_workers=1,
                     validation_fraction=0.3, decontaminate_ngram=ngram)
    stats = prepare_corpus(cfg, tmp_path / "out", work_dir=tmp_path / "work").stats
    train = [t for t in iter_jsonl_texts(tmp_path / "out" / "train.jsonl")]
    held = set().union(*(_ngrams(t) for t in iter_jsonl_texts(tmp_path / "out" / "validation.jsonl")))
    overlapping = [t for t in train if _ngrams(t) & held]
    if ngram:
        assert not overlapping
        assert stats["dropped"]["contaminated"] >= 1
        kept = stats["train"]["documents"] + stats["validation"]["documents"]
        assert kept + sum(stats["dropped"].values()) == 40, stats["dropped"]
        assert stats["sources"][0]["kept"] == kept
        assert stats["dropped_examples"]["contaminated"]
    else:
        assert overlapping and "contaminated" not in stats["dropped"]


@needs_shared
def test_near_duplicate_index_gives_datasketch_lsh_verdicts():
    """Our flat banding tables drop exactly the documents datasketch's MinHashLSH (same bands and
    rows, same confirmation) drops, on real articles and mutated copies of them."""
    import random

    from datasketch import LeanMinHash, MinHashLSH

    from azllm.data.dedup import NearDuplicates, _jaccard, minhash_signature

    rng = random.Random(0)
    docs = real_docs(150)
    texts = list(docs)
    for text in docs[:100]:  # one word in 50, 10 or 4 changed: near, borderline and far copies
        words = text.split()
        every = rng.choice([50, 10, 4])
        texts.append(" ".join(w if i % every else "dəyişdi" for i, w in enumerate(words)))
    rng.shuffle(texts)
    signatures = [minhash_signature(t, 5, 112).astype(np.uint32) for t in texts]

    ours = NearDuplicates(bands=14, rows=8)
    lsh, kept = MinHashLSH(num_perm=112, params=(14, 8)), {}
    ours_dropped, reference_dropped = [], []
    for i, sig in enumerate(signatures):
        ours_dropped.append(ours.add(i, sig) is not None)
        mh = LeanMinHash(seed=1, hashvalues=sig, scheme="affine32")
        dup = any(_jaccard(kept[j], sig) >= 0.7 for j in lsh.query(mh))
        reference_dropped.append(dup)
        if not dup:
            lsh.insert(i, mh)
            kept[i] = sig
    assert ours_dropped == reference_dropped
    assert 20 <= sum(ours_dropped) < 100, sum(ours_dropped)  # the near copies go, the far ones stay
