"""Derive a smaller byte-level BPE from a larger one by truncating its merge list.

Why this is exact for HF `tokenizers`' `BpeTrainer` (0.2x): the trainer first builds the
vocabulary's head (its `special_tokens`, then the alphabet: `initial_alphabet` plus the
corpus's characters, cut by `limit_alphabet`, sorted by code point), then pops the most
frequent pair from a priority queue (ties broken by the pair's ids), merges it everywhere,
and repeats. It stops when the vocabulary reaches `vocab_size` or the best pair is seen
fewer than `min_frequency` times. Nothing before the stop reads `vocab_size`, so for one
corpus and equal other settings the run at a smaller size is a prefix of the run at a
larger one: the same head, the first k merges, the ids 0..size-1.

When it is not exact, and `can_truncate` says no: any other setting differs
(`min_frequency`, `special_tokens`, `limit_alphabet`, `initial_alphabet`,
`continuing_subword_prefix`, `end_of_word_suffix`, `max_token_length`), or the corpus
differs (the caller trains both on the same texts). A `limit_alphabet` keeps the most
frequent characters whatever the size, so equal limits still truncate exactly; a
different limit or initial alphabet changes the head and every id after it.
`tests/test_tokenizer_truncate.py` checks the claim against separate trainings.

    >>> small = truncate_bpe_model(json.loads(big_json)["model"], learned_size=744)
"""

from __future__ import annotations

from typing import Any

from tokenizers import trainers

SIZE_FREE_SETTINGS = ("min_frequency", "special_tokens", "limit_alphabet", "initial_alphabet",
                      "continuing_subword_prefix", "end_of_word_suffix", "max_token_length")
"""Every `BpeTrainer` setting that shapes the merges, except `vocab_size` (`show_progress` does not)."""


def trainer_settings(trainer: trainers.BpeTrainer) -> dict[str, Any]:
    """The trainer's `SIZE_FREE_SETTINGS`, comparable with `==` (alphabet as a sorted list,
    special tokens as their contents and flags)."""
    out: dict[str, Any] = {}
    for name in SIZE_FREE_SETTINGS:
        value = getattr(trainer, name)
        if name == "initial_alphabet":
            value = sorted(value)
        elif name == "special_tokens":
            value = [(t.content, t.single_word, t.lstrip, t.rstrip, t.normalized, t.special) for t in value]
        out[name] = value
    return out


def can_truncate(big: trainers.BpeTrainer, small: trainers.BpeTrainer) -> bool:
    """True when `small`'s training on a corpus equals `big`'s on it, truncated (module docstring)."""
    return small.vocab_size <= big.vocab_size and trainer_settings(big) == trainer_settings(small)


def truncate_bpe_model(model: dict[str, Any], learned_size: int) -> dict[str, Any]:
    """The `model` section of a trained tokenizer.json cut to `learned_size` tokens.

    Keeps ids 0..learned_size-1 and the merges the trainer had made when its vocabulary
    reached that size: up to the merge that created id learned_size-1 (a merge whose product
    is already in the vocabulary adds no id; the trainer stops before the merge after the
    last new id), none when that id is in the head (specials, alphabet). A model smaller than
    `learned_size` (the corpus stopped it early) comes back whole, as a separate training
    would stop at the same merge.
    """
    vocab: dict[str, int] = model["vocab"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    if learned_size >= len(vocab):
        return dict(model)
    prefix = model.get("continuing_subword_prefix") or ""  # the trainer drops it from the right part

    def product(a: str, b: str) -> str:
        return a + (b[len(prefix):] if prefix and b.startswith(prefix) else b)

    last = learned_size - 1
    cut = next((i + 1 for i, (a, b) in enumerate(merges) if vocab.get(product(a, b)) == last), 0)
    kept = {token: i for token, i in vocab.items() if i < learned_size}
    return {**model, "vocab": kept, "merges": [list(m) for m in merges[:cut]]}
