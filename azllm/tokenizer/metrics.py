"""Tokenizer efficiency on a corpus: fertility, bytes per token, context capacity.

Definitions (docs/DESIGN.md §9):
- words = `text.split()` after NFC normalisation;
- fertility = tokens / words, tokens without special tokens, summed over the corpus;
- bytes per token = UTF-8 bytes / tokens; words per context = 131,072 / fertility.

Texts are NFC-normalised before tokenizing too (the shared data already is NFC).

`share_words_3plus_tokens`: each word is tokenized on its own, with a leading space
unless it starts its line (that is how it occurs in running text: " dünya"), and counted
if that gives 3 or more tokens. Distinct (word, leading space) forms are tokenized once
and weighted by their counts.

    >>> tokenizer_metrics(load_tokenizer("llama-3.2"), texts)["fertility"]
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

CONTEXT_TOKENS = 131_072
"""Llama 3.2's context length: words per context = CONTEXT_TOKENS / fertility."""

_BATCH = 256


def _encode_batch(tokenizer: Any, texts: list[str]) -> list[int]:
    """Token counts without specials; uses the Rust backend in batches when there is one."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return [len(e.ids) for e in backend.encode_batch(texts, add_special_tokens=False)]
    return [len(tokenizer.encode(t, add_special_tokens=False)) for t in texts]


def _word_forms(text: str) -> Counter:
    forms: Counter = Counter()
    for line in text.split("\n"):
        for i, w in enumerate(line.split()):
            forms[w if i == 0 else " " + w] += 1
    return forms


def tokenizer_metrics(tokenizer: Any, texts: Iterable[str]) -> dict[str, float | int]:
    """Fertility and friends of `tokenizer` on `texts` (summed over the corpus, not averaged)."""
    num_tokens = num_words = num_bytes = num_docs = 0
    forms: Counter = Counter()
    batch: list[str] = []

    def flush() -> None:
        nonlocal num_tokens
        num_tokens += sum(_encode_batch(tokenizer, batch))
        batch.clear()

    for text in texts:
        text = unicodedata.normalize("NFC", text)
        num_docs += 1
        num_words += len(text.split())
        num_bytes += len(text.encode("utf-8"))
        forms.update(_word_forms(text))
        batch.append(text)
        if len(batch) >= _BATCH:
            flush()
    flush()
    if num_words == 0 or num_tokens == 0:
        raise ValueError(f"no words to measure: {num_docs} documents, {num_words} words; "
                         "check the evaluation file and its text field")
    unique = list(forms)
    counts = []
    for i in range(0, len(unique), 4096):
        counts.extend(_encode_batch(tokenizer, unique[i:i + 4096]))
    split3 = sum(forms[f] for f, n in zip(unique, counts) if n >= 3)
    fertility = num_tokens / num_words
    return {
        "fertility": fertility,
        "bytes_per_token": num_bytes / num_tokens,
        "words_per_context": CONTEXT_TOKENS / fertility,
        "share_words_3plus_tokens": split3 / sum(forms.values()),
        "vocab_size": len(tokenizer),
        "tokens": num_tokens,
        "words": num_words,
        "bytes": num_bytes,
        "documents": num_docs,
    }


def cap_texts(texts: Iterable[str], max_mb: float) -> tuple[list[str], bool]:
    """The first documents of `texts` up to `max_mb` MB of UTF-8 (at least one), and whether the
    cap cut anything (`[tokenizer] fertility_max_mb`); stops reading at the cap. 0 = all of them."""
    out: list[str] = []
    budget = max_mb * 1e6
    used = 0
    for text in texts:
        size = len(text.encode("utf-8"))
        if max_mb > 0 and out and used + size > budget:
            return out, True
        out.append(text)
        used += size
    return out, False


def fertility_table(tokenizers: dict[str, Any], texts: Sequence[str]):
    """One row per tokenizer (index `tokenizer`), columns from `tokenizer_metrics`."""
    import pandas as pd

    rows = [{"tokenizer": name, **tokenizer_metrics(tok, texts)} for name, tok in tokenizers.items()]
    return pd.DataFrame(rows)
