"""What one process does to one shard: repair, filter, decontaminate, hash and MinHash each document.

Output in the shard's directory: `docs.jsonl` (`{"text": ...}` per kept document, the output
format, so the global stage copies bytes without parsing), `index.npz` (per kept document: `sha1`
(n, 20) uint8, `read` (its read index in the shard), `offset` and `length` of its line, and
its `words`, `chars`, `bytes` for the split statistics) and
`minhash.npy` (uint32, one row of `minhash_bands * minhash_rows` values per kept document);
the returned dict is the shard's statistics (also stored in its `done.json`).

Evaluation shards (validation, other-domain) get the repairs and the basic filters
(`too_short`, `non_latin`) only: the bytes every model is scored on must not move when a
quality threshold is tuned. The training corpus gets every filter.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from azllm.config import DataConfig, section_from_dict
from azllm.data.clean import count_words, latin_fraction
from azllm.data.dedup import minhash_signature, ngram_keys
from azllm.data.readers import BadLines
from azllm.data.shards import Shard, iter_shard_documents
from azllm.data.textfix import repair_text

MAX_EXAMPLES = 3
"""Dropped documents kept per reason and shard, for the data card (like datatrove's exclusion writers)."""
EXAMPLE_CHARS = 300


@lru_cache(maxsize=2)
def _config(raw: str) -> DataConfig:
    return section_from_dict(DataConfig, json.loads(raw), "data")


@lru_cache(maxsize=2)
def _eval_ngrams(path: str, n: int, digest: str) -> frozenset:
    """Word n-grams of the evaluation texts (`digest` only keys the cache to the file's content)."""
    if not path or n == 0:
        return frozenset()
    keys: set = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            keys.update(ngram_keys(json.loads(line)["text"], n))
    return frozenset(keys)


def drop_reason(text: str, cfg: DataConfig, *, full: bool) -> str | None:
    """Why a repaired document is dropped (None = kept). `full`: the language and quality filters too."""
    if len(text) < cfg.min_chars:
        return "too_short"
    if latin_fraction(text) < cfg.min_latin_fraction:
        return "non_latin"
    if not full:
        return None
    if cfg.langid:
        from azllm.data.langid import language_of

        lang, score = language_of(text, cfg.langid_languages, cfg.langid_chars, cfg.langid_backend)
        if lang != "azerbaijani":
            return f"language:{lang}"
        if score < cfg.min_language_score:
            return "language:low_score"
    from azllm.data.quality import quality_reason

    reason = quality_reason(text, cfg.quality)
    return f"quality:{reason}" if reason else None


def process_shard(shard: Shard, shard_dir: Path, settings: dict[str, Any],
                  progress: Callable[[int], None] = lambda n: None) -> dict[str, Any]:
    """Filter one shard into `shard_dir`; return its statistics. `progress(n)`: n more bytes read."""
    import hashlib

    cfg = _config(settings["data"])
    full = shard.role == "corpus"
    contaminants = _eval_ngrams(settings["eval_texts"], cfg.decontaminate_ngram, settings["eval_digest"]) \
        if full else frozenset()
    stats: dict[str, Any] = {"read": 0, "kept": 0, "kept_bytes": 0, "dropped": Counter(), "examples": {},
                             "repairs": Counter()}
    bad = BadLines()
    signatures, digests = [], []
    columns: dict[str, list[int]] = {key: [] for key in ("read", "offset", "length", "words", "chars", "bytes")}
    offset = 0
    with open(shard_dir / "docs.jsonl", "wb") as out:
        for raw in iter_shard_documents(shard, text_field=cfg.text_field, skip_bad_lines=cfg.skip_bad_lines,
                                        counter=bad):
            if full and cfg.max_documents and stats["read"] >= cfg.max_documents:
                break
            stats["read"] += 1
            progress(len(raw.encode("utf-8")) + 12)  # + the JSON wrapper, roughly
            text, repairs = repair_text(raw, fix_encoding=cfg.fix_encoding, lookalikes=cfg.map_lookalikes,
                                        pii=cfg.replace_pii)
            stats["repairs"].update(repairs)
            reason = drop_reason(text, cfg, full=full)
            if reason is None and contaminants and not contaminants.isdisjoint(
                    ngram_keys(text, cfg.decontaminate_ngram)):
                reason = "contaminated"
            if reason:
                _count_drop(stats, reason, text)
                continue
            line = (json.dumps({"text": text}, ensure_ascii=False) + "\n").encode("utf-8")
            out.write(line)
            encoded = text.encode("utf-8")
            digests.append(hashlib.sha1(encoded).digest())
            for key, value in (("read", stats["read"] - 1), ("offset", offset), ("length", len(line)),
                               ("words", count_words(text)), ("chars", len(text)), ("bytes", len(encoded))):
                columns[key].append(value)
            offset += len(line)
            signatures.append(minhash_signature(text, cfg.minhash_ngram, cfg.minhash_bands * cfg.minhash_rows))
            stats["kept"] += 1
            stats["kept_bytes"] += len(text.encode("utf-8"))
    width = cfg.minhash_bands * cfg.minhash_rows
    np.save(shard_dir / "minhash.npy", np.array(signatures, dtype=np.uint32).reshape(-1, width))
    np.savez(shard_dir / "index.npz", sha1=np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, 20),
             **{key: np.array(values, dtype=np.int64) for key, values in columns.items()})
    stats["bad_lines"] = bad.count
    stats["bad_line_examples"] = list(bad.examples)
    return json.loads(json.dumps(stats))  # Counters -> plain dicts, as done.json stores them


def _count_drop(stats: dict[str, Any], reason: str, text: str) -> None:
    stats["dropped"][reason] += 1
    examples = stats["examples"].setdefault(reason, [])
    if len(examples) < MAX_EXAMPLES:
        examples.append(text[:EXAMPLE_CHARS])
