"""Gopher/FineWeb repetition and quality filters: datatrove's implementations, FineWeb-2's settings.

FineWeb-2 (`fineweb-2-pipeline.py`) runs GopherRepetitionFilter (paragraph and line-char
checks off), FineWebQualityFilter (short-line check off, char_duplicates_ratio 0.1) and
GopherQualityFilter with the per-language thresholds of `configs/azj_Latn.yml`; the numbers
live in :class:`azllm.config.QualityConfig`, each with its source.

    >>> from azllm.config import QualityConfig
    >>> quality_reason("salam " * 100, QualityConfig())
    'gopher_rep:dup_line_frac'
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.filters import FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter
from datatrove.utils.word_tokenizers import WordTokenizer

from azllm.config import QualityConfig

_WORD = re.compile(r"\d+(?:[.,:/-]\d+)*(?:-\w+)?\.?(?=\s|$)|\w+(?:[-'’.]\w+)*|[^\w\s]")
"""A number with its inner dots (clause `332.1.1.`, date `13.06.2021`, `2021-ci`) is one token, as
spaCy keeps it; words keep inner hyphens and apostrophes; every other punctuation mark is a token."""


class AzWordTokenizer(WordTokenizer):
    """Words and punctuation marks as separate tokens, like spaCy's `az` tokenizer FineWeb-2 used.

    Why our own: datatrove maps azj_Latn to spaCy, a large dependency for what is, for
    Azerbaijani, a split on spaces plus punctuation off the word ends.
    """

    def word_tokenize(self, text: str) -> list[str]:
        return _tokens(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [s for s in re.split(r"(?<=[.!?])\s+", text) if s]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in re.finditer(r"[^.!?]+[.!?]*", text)]


def repetition_reason(text: str, words: list[str], cfg: QualityConfig) -> str | None:
    """datatrove's GopherRepetitionFilter as FineWeb-2 sets it (line fraction, top and duplicated
    word n-grams; paragraph and line-character checks off), on integer n-gram hashes.

    Why not datatrove's own: it joins every n-gram into a string for n = 2..10 and was the
    slowest step of preparation (measured 2.2-2.6 MB/s per core here; this: ~7 MB/s).
    Same reasons, same formulas; tests/test_data_filters.py checks it against datatrove's.
    """
    lines = _LINES.split(text)
    if len(lines) - len(set(lines)) > cfg.dup_line_frac * len(lines):
        return "dup_line_frac"
    if not words:
        return None
    vocab: dict[str, int] = {}
    ids = np.array([vocab.setdefault(w, len(vocab)) for w in words], dtype=np.uint64)
    lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    cum = np.concatenate(([0], np.cumsum(lengths)))
    hashes = ids.copy()
    for n in range(2, 5 + len(cfg.dup_n_gram_fracs)):
        if n > len(words):
            break
        hashes = hashes[:-1] * np.uint64(1_000_003) + ids[n - 1:] + np.uint64(1)
        chars = cum[n:] - cum[:-n]  # the n words' characters, no separators
        if n - 2 < len(cfg.top_n_gram_fracs):
            _, first, counts = np.unique(hashes, return_index=True, return_counts=True)
            top = first[counts == counts.max()].min()  # Counter.most_common: first-seen among the most frequent
            if (chars[top] + n - 1) * counts.max() / len(text) > cfg.top_n_gram_fracs[n - 2]:
                return f"top_{n}_gram"
        if n < 5:
            continue
        _, first = np.unique(hashes, return_index=True)
        if len(first) == len(hashes):
            return None  # no n-gram repeats, so no longer one does either
        start = int(np.setdiff1d(np.arange(len(hashes)), first, assume_unique=True)[0])
        if _greedy_duplicate_chars(hashes.tolist(), chars.tolist(), n, start) / len(text) \
                > cfg.dup_n_gram_fracs[n - 5]:
            return f"duplicated_{n}_n_grams"
    return None


def _greedy_duplicate_chars(hashes: list[int], chars: list[int], n: int, start: int = 0) -> int:
    """datatrove's `find_all_duplicate`: a repeated n-gram counts its characters and skips n words.

    `start`: the first position whose n-gram occurred before; the loop would only add the
    ones before it to `seen`, so it starts there.
    """
    seen: set[int] = set(hashes[:start])
    repeated, i = 0, start
    while i < len(hashes):
        if hashes[i] in seen:
            repeated += chars[i]
            i += n
        else:
            seen.add(hashes[i])
            i += 1
    return repeated


_LINES = re.compile("\n+")


@lru_cache(maxsize=2)
def _tokens(text: str) -> list[str]:
    """The three filters tokenize the same document in turn: tokenize it once (read-only list)."""
    return _WORD.findall(text)


@lru_cache(maxsize=4)
def _filters(cfg: QualityConfig) -> tuple:
    tok = AzWordTokenizer("az")
    repetition = GopherRepetitionFilter(
        dup_para_frac=0, dup_line_char_frac=0, dup_para_char_frac=0, dup_line_frac=cfg.dup_line_frac,
        top_n_grams=tuple((n, f) for n, f in enumerate(cfg.top_n_gram_fracs, start=2)),
        dup_n_grams=tuple((n, f) for n, f in enumerate(cfg.dup_n_gram_fracs, start=5)), language=tok)
    fineweb = FineWebQualityFilter(
        short_line_thr=999, char_duplicates_ratio=cfg.char_duplicates_ratio, line_punct_thr=cfg.line_punct_thr,
        new_line_ratio=cfg.new_line_ratio, language=tok)
    gopher = GopherQualityFilter(
        min_doc_words=cfg.min_words, max_avg_word_length=cfg.max_avg_word_length,
        min_avg_word_length=cfg.min_avg_word_length, stop_words=list(cfg.stop_words),
        max_non_alpha_words_ratio=cfg.max_non_alpha_words_ratio, min_stop_words=cfg.min_stop_words,
        language=tok)
    return ("gopher_rep", repetition), ("fineweb_qual", fineweb), ("gopher_qual", gopher)


def quality_reason(text: str, cfg: QualityConfig) -> str | None:
    """None if `text` passes every filter, else `<filter>:<datatrove's reason>` of the first it fails.

    Word count as datatrove's (tokens other than punctuation); below `min_words_for_ratios`
    only the length check applies.
    """
    if not cfg.enabled:
        return None
    num_words = sum(1 for w in _WORD.findall(text) if w[0].isalnum() or len(w) > 1)
    if num_words < cfg.min_words:
        return "gopher_qual:gopher_short_doc"
    if num_words < cfg.min_words_for_ratios:
        return None
    reason = repetition_reason(text, AzWordTokenizer("az").word_tokenize(text), cfg)
    if reason:
        return f"gopher_rep:{reason}"
    doc = Document(text=text, id="")
    for name, filt in _filters(cfg)[1:]:
        verdict = filt.filter(doc)
        if verdict is not True:
            return f"{name}:{verdict[1] if isinstance(verdict, tuple) else 'failed'}"
    return None
