"""Corpus size statistics: documents, UTF-8 bytes, words, characters.

Bytes matter because bits-per-byte is the cross-tokenizer metric; words are
`count_words` (docs/DESIGN.md §9: `text.split()` after NFC), the denominator of fertility.

    >>> corpus_stats(["Salam dünya", "Sağ ol"])
    {'documents': 2, 'bytes': 19, 'words': 4, 'chars': 17}
"""

from __future__ import annotations

from collections.abc import Iterable

from azllm.data.clean import count_words

STAT_KEYS = ("documents", "bytes", "words", "chars")


def empty_stats() -> dict[str, int]:
    return dict.fromkeys(STAT_KEYS, 0)


def add_document(stats: dict[str, int], text: str) -> None:
    """Count one document into `stats` in place (for streaming loops that write as they go)."""
    stats["documents"] += 1
    stats["bytes"] += len(text.encode("utf-8"))
    stats["words"] += count_words(text)
    stats["chars"] += len(text)


def corpus_stats(texts: Iterable[str]) -> dict[str, int]:
    """Stats of a stream of documents; one pass, constant memory."""
    stats = empty_stats()
    for text in texts:
        add_document(stats, text)
    return stats


def merge_stats(*parts: dict[str, int]) -> dict[str, int]:
    """Sum stats of disjoint parts (e.g. shards counted in parallel)."""
    out = empty_stats()
    for part in parts:
        for key in STAT_KEYS:
            out[key] += part.get(key, 0)
    return out


def describe_stats(stats: dict[str, int]) -> dict[str, float | int]:
    """Stats plus derived numbers people read: MB (10^6 bytes) and words per document."""
    docs = stats["documents"]
    return {**stats, "mb": round(stats["bytes"] / 1e6, 6),
            "words_per_doc": round(stats["words"] / docs, 1) if docs else 0.0}


def filter_rows(corpus: dict, example_chars: int = 120) -> list[dict[str, object]]:
    """Card rows from `prepare_corpus(...).stats`: one per (source, reason) with a dropped example.

    Sorted by source then most documents first; `example` is the first dropped text kept
    for that reason (any source), cut to `example_chars`.
    """
    examples = corpus.get("dropped_examples", {})
    rows = [{"source": source, "reason": reason, "documents": count,
             "example": (examples.get(reason) or [""])[0][:example_chars]}
            for source, counts in corpus.get("dropped_by_source", {}).items()
            for reason, count in counts.items() if count]
    return sorted(rows, key=lambda r: (str(r["source"]), -int(r["documents"]), str(r["reason"])))
