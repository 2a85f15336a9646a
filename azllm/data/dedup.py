"""Exact and MinHash near-duplicate removal across all shards, and n-gram decontamination.

:func:`dedup_shards` is the corpus-wide pass, in shard order, so 1 and N workers give the same
survivors:

- exact duplicates: the first occurrence wins (evaluation shards come first, so a
  document in both stays evaluation text and leaves train);
- near duplicates (:class:`NearDuplicates`): evaluation documents are indexed without being
  dropped; a training document near an earlier one is dropped.

MinHash over word 5-grams with 14 bands x 8 rows, as FineWeb-2 (`fineweb-2-pipeline.py`,
`MinhashConfig(num_buckets=14, hashes_per_bucket=8, n_grams=5)`), through datasketch's
`MinHash` (signatures, computed in the shard workers), banded in one index over every shard
in the parent (:class:`NearDuplicates`, leaner than datasketch's `MinHashLSH`, same verdicts).
A candidate pair is confirmed when the signatures' estimated Jaccard similarity reaches
`confirm_jaccard`, which trims the LSH's chance hits (FineWeb-2's clustering takes every band
collision).

    >>> near = NearDuplicates(bands=14, rows=8)
    >>> near.add("a", minhash_signature("bir iki üç dörd beş altı yeddi", 5, 112))
    >>> near.add("b", minhash_signature("bir iki üç dörd beş altı yeddi", 5, 112))
    'a'
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import xxhash
from datasketch import MinHash

from azllm.config import DataConfig

_WORDS = re.compile(r"\w+")
T = TypeVar("T")


def words_of(text: str) -> list[str]:
    """Lower-cased words without punctuation: the unit of shingles and of decontamination n-grams."""
    return _WORDS.findall(text.lower())


def minhash_signature(text: str, n: int, num_perm: int) -> np.ndarray:
    """datasketch MinHash (xxh32 of each word n-gram; the whole text when it has fewer than n words)."""
    words = words_of(text)
    shingles = [" ".join(words[i:i + n]).encode() for i in range(max(1, len(words) - n + 1))]
    m = MinHash(num_perm=num_perm, seed=1, hashfunc=xxhash.xxh32_intdigest)
    m.update_batch(shingles)
    return m.hashvalues


def ngram_keys(text: str, n: int) -> set[int]:
    """Hashes of the word n-grams of `text` (Python's hash: compare only within one process)."""
    words = words_of(text)
    return {hash(tuple(words[i:i + n])) for i in range(len(words) - n + 1)}


def drop_overlapping(docs: list[T], held_out: list[T], text_of: Callable[[T], str], n: int) -> tuple[list[T], list[T]]:
    """(kept, dropped) of `docs`: dropped share a word `n`-gram with a `held_out` document.

    Validation held out by hash comes from the same corpus as train, after near-dedup: a
    paragraph syndicated into two otherwise different documents passes MinHash, and scoring
    the held-out copy would reward memorising the train one. The shard workers cannot do this
    (the held-out set is known only after the global dedup), so it runs once in the join: one
    more read of the train text, ~25 MB/s per core.
    """
    if not n or not held_out:
        return docs, []
    held: set[int] = set()
    for doc in held_out:
        held |= ngram_keys(text_of(doc), n)
    kept, dropped = [], []
    for doc in docs:
        (dropped if not held.isdisjoint(ngram_keys(text_of(doc), n)) else kept).append(doc)
    return kept, dropped


class NearDuplicates:
    """MinHash LSH over datasketch's signatures: `add` returns the key of an earlier near-duplicate,
    or None (then indexes it).

    The banding is FineWeb-2's (a candidate shares all `rows` values of one of `bands` bands), held
    in flat tables instead of datasketch's `MinHashLSH`, which is measurably heavier: for 480,000
    random signatures (14 x 8, SHA-1 keys) its `DictSetStorage` (a set per bucket, every key's
    band bytes kept as well) took 2.36 GiB and 27 s, these tables 0.85 GiB and 6 s, with the same
    verdicts (`tests/test_data_dedup.py`); the join's index is what bounds preparation's memory.
    Candidates are confirmed earliest first, so which kept document a duplicate is counted
    against is deterministic.
    """

    def __init__(self, *, bands: int, rows: int, confirm_jaccard: float = 0.7) -> None:
        self.bands, self.rows, self.num_perm = bands, rows, bands * rows
        self.confirm_jaccard = confirm_jaccard
        self._tables: list[dict[int, int | list[int]]] = [{} for _ in range(bands)]
        """Per band: hash of the band's values -> index of the document (a list once several share it)."""
        self._keys: list[Hashable] = []
        self._signatures = np.empty((1024, self.num_perm), dtype=np.uint32)
        self.cluster_size: Counter = Counter()
        """Kept document key -> documents in its cluster (itself included) for those with copies."""

    def _band_hashes(self, hashvalues: np.ndarray) -> list[int]:
        bands = np.ascontiguousarray(hashvalues, dtype=np.uint32).reshape(self.bands, self.rows)
        return [xxhash.xxh3_64_intdigest(band.tobytes()) for band in bands]

    def _candidates(self, band_hashes: list[int]) -> list[int]:
        found: set[int] = set()
        for table, h in zip(self._tables, band_hashes, strict=True):
            hit = table.get(h)
            if hit is not None:
                found.update(hit) if isinstance(hit, list) else found.add(hit)
        return sorted(found)

    def _index(self, key: Hashable, hashvalues: np.ndarray, band_hashes: list[int]) -> None:
        i = len(self._keys)
        if i == len(self._signatures):
            self._signatures = np.concatenate([self._signatures, np.empty_like(self._signatures)])
        self._signatures[i] = hashvalues
        self._keys.append(key)
        for table, h in zip(self._tables, band_hashes, strict=True):
            hit = table.get(h)
            if hit is None:
                table[h] = i
            elif isinstance(hit, list):
                hit.append(i)
            else:
                table[h] = [hit, i]

    def add(self, key: Hashable, hashvalues: np.ndarray, *, drop: bool = True) -> Hashable | None:
        """Index `key` unless it near-duplicates an indexed document (returned); `drop=False` always indexes."""
        if len(hashvalues) != self.num_perm:
            raise ValueError(f"signature of {len(hashvalues)} values, the index expects {self.num_perm} "
                             f"({self.bands} bands x {self.rows} rows)")
        band_hashes = self._band_hashes(hashvalues)
        if drop:
            for i in self._candidates(band_hashes):
                if _jaccard(self._signatures[i], hashvalues) >= self.confirm_jaccard:
                    other = self._keys[i]
                    self.cluster_size[other] += 1 if self.cluster_size[other] else 2
                    return other
        self._index(key, hashvalues, band_hashes)
        return None

    def cluster_stats(self, top: int = 10) -> dict:
        """Cluster sizes for the card: how many clusters, a size histogram, the largest few."""
        sizes = Counter(self.cluster_size.values())
        return {"clusters": len(self.cluster_size),
                "documents_removed": sum(s - 1 for s in self.cluster_size.values()),
                "size_histogram": {str(k): v for k, v in sorted(sizes.items())},
                "largest": sorted(self.cluster_size.values(), reverse=True)[:top]}


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a == b)) / len(a)


@dataclass(frozen=True)
class DocRef:
    """Where a kept document's line is: shard directory, byte offset and length in its docs.jsonl."""

    shard_dir: Path
    offset: int
    length: int
    digest: bytes
    source_index: int
    size: tuple[int, int, int] = (0, 0, 0)
    """(words, chars, bytes) of the text, counted by the worker: split statistics without re-reading."""


@dataclass
class Survivors:
    """Documents left after dedup, per role, in shard order; and what dedup removed."""

    by_role: dict[str, list[DocRef]] = field(default_factory=lambda: {"validation": [], "other_domain": [],
                                                                       "corpus": []})
    dropped: Counter = field(default_factory=Counter)
    dropped_by_source: dict[int, Counter] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    clusters: dict[str, Any] = field(default_factory=dict)
    handles: dict[Path, Any] = field(default_factory=dict)
    """Open docs.jsonl files (for examples and the outputs); closed by :meth:`close`."""

    def close(self) -> None:
        for f in self.handles.values():
            f.close()
        self.handles.clear()


def dedup_shards(shards: list[Any], results: list[dict[str, Any]], cfg: DataConfig) -> Survivors:
    """Exact then near-duplicate removal over every shard's output, in shard order.

    `max_documents` caps the corpus documents *read* (kept or not), counted in shard order.
    """
    out = Survivors()
    budget = cfg.max_documents or math.inf
    seen: set[bytes] = set()
    near = NearDuplicates(bands=cfg.minhash_bands, rows=cfg.minhash_rows) if cfg.near_dedup else None
    for shard, result in zip(shards, results):
        shard_dir = Path(result["dir"])
        signatures = np.load(shard_dir / "minhash.npy")
        index = np.load(shard_dir / "index.npz")
        counts = out.dropped_by_source.setdefault(shard.source_index if shard.role == "corpus" else -1, Counter())
        rows = zip(index["sha1"], *(index[k].tolist() for k in ("read", "offset", "length", "words", "chars",
                                                                   "bytes")))
        for row, (sha1, read, offset, length, words, chars, nbytes) in enumerate(rows):
            if shard.role == "corpus" and read >= budget:
                break
            digest = sha1.tobytes()
            ref = DocRef(shard_dir, offset, length, digest, shard.source_index, (words, chars, nbytes))
            reason = None
            if digest in seen:
                reason = "duplicate"
            elif near is not None and near.add(digest, signatures[row], drop=shard.role == "corpus") is not None:
                reason = "near_duplicate"
            if reason:
                out.dropped[reason] += 1
                counts[reason] += 1
                examples = out.examples.setdefault(reason, [])
                if len(examples) < 3:
                    examples.append(read_text(ref, out.handles)[:300])
                continue
            seen.add(digest)
            out.by_role[shard.role].append(ref)
        if shard.role == "corpus":
            budget -= result["read"]
    out.clusters = near.cluster_stats() if near else {}
    return out


def read_line(ref: DocRef, handles: dict[Path, Any]) -> bytes:
    """The `{"text": ...}` line of a kept document, as bytes (files stay open in `handles`)."""
    f = handles.get(ref.shard_dir)
    if f is None:
        f = handles[ref.shard_dir] = open(ref.shard_dir / "docs.jsonl", "rb")  # noqa: SIM115 - closed by caller
    f.seek(ref.offset)
    return f.read(ref.length)


def read_text(ref: DocRef, handles: dict[Path, Any]) -> str:
    return json.loads(read_line(ref, handles))["text"]
