"""Train a byte-level BPE tokenizer with Llama 3's settings.

Pipeline (as Llama 3): regex split with `LLAMA3_PATTERN` (isolated) -> ByteLevel without
prefix space -> BPE over the 256-byte alphabet with `ignore_merges=True`; ByteLevel
decoder; Llama 3's 256 special tokens appended *after* the learned vocabulary, so for a
requested `vocab_size` V the learned tokens are ids 0..V-257 (the 256 bytes first, then
one token per merge, in merge order) and the specials are ids V-256..V-1 in Meta's order
(`<|begin_of_text|>` = V-256, `<|eot_id|>` = V-247). `vocab_size` counts the specials.

    >>> from azllm.tokenizer.train import train_tokenizer
    >>> t = train_tokenizer(["Salam dünya"] * 100, vocab_size=600, out_dir=Path("/tmp/tok"))
    >>> AutoTokenizer.from_pretrained(t.path)

A corpus too small for V stops early: a warning says so and `vocab_size` reports the
size reached (specials included).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, trainers
from tokenizers.models import BPE
from tokenizers.pre_tokenizers import ByteLevel

from azllm.tokenizer.llama3 import (
    NUM_SPECIAL_TOKENS,
    add_llama3_specials,
    llama3_pre_tokenizer,
    wrap_llama3_style,
)

log = logging.getLogger(__name__)

NUM_BYTES = 256
MIN_VOCAB_SIZE = NUM_BYTES + NUM_SPECIAL_TOKENS
"""The 256-byte alphabet plus Llama 3's 256 specials: the smallest vocabulary that can exist."""


def sample_texts(path: Path, sample_mb: float, *, seed: int = 0, show_progress: bool = True) -> Iterator[str]:
    """A bounded sample of the unique documents of a prepared JSONL file, for BPE training.

    Why: HF's BPE trainer keeps every distinct pre-token and pair in memory (users report
    100+ GB on large corpora, huggingface/tokenizers#1345), and weighted copies in
    train.jsonl would count a document several times. Each distinct document is kept when
    a hash of its text falls below `sample_mb` / file size, the same rate for every source,
    so the sample keeps the sources' shares; deterministic, so every pass of a sweep sees
    the same documents. `sample_mb` <= 0 or >= the file: every unique document.
    """
    from tqdm import tqdm

    path = Path(path)
    size = path.stat().st_size
    rate = 1.0 if sample_mb <= 0 else min(1.0, sample_mb * 1e6 / max(1, size))
    seen: set[bytes] = set()
    with open(path, "rb") as f, tqdm(total=size, unit="B", unit_scale=True, desc="tokenizer sample",
                                     disable=not show_progress, mininterval=2.0) as bar:
        for line in f:
            bar.update(len(line))
            text = json.loads(line)["text"]
            digest = hashlib.sha1(f"{seed}:".encode() + text.encode("utf-8")).digest()
            if digest in seen or int.from_bytes(digest[:8], "big") / 2**64 >= rate:
                continue
            seen.add(digest)
            yield text


@dataclass(frozen=True)
class TrainedTokenizer:
    path: Path
    """A PreTrainedTokenizerFast directory (`AutoTokenizer.from_pretrained(path)`)."""
    vocab_size: int
    """Vocabulary reached, special tokens included."""
    requested_vocab_size: int

    @property
    def reached_target(self) -> bool:
        return self.vocab_size >= self.requested_vocab_size


def _check_vocab_size(vocab_size: int) -> None:
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(
            f"vocab_size={vocab_size} is smaller than the {NUM_BYTES}-byte alphabet plus "
            f"{NUM_SPECIAL_TOKENS} special tokens = {MIN_VOCAB_SIZE}; ask for at least {MIN_VOCAB_SIZE + 1}"
        )


def _non_empty(texts: Iterable[str], counter: list[int]) -> Iterator[str]:
    for t in texts:
        if t:
            counter[0] += 1
            yield t


def train_tokenizer(texts: Iterable[str], *, vocab_size: int, min_frequency: int = 2, out_dir: Path,
                    show_progress: bool = True, length: int | None = None) -> TrainedTokenizer:
    """Train on `texts` (streamed once) and save a PreTrainedTokenizerFast directory to `out_dir`.

    `length`: number of documents, for the progress bar (taken from `len(texts)` when it has one).
    Raises ValueError for an empty corpus or a `vocab_size` below 512 (bytes + specials).
    """
    _check_vocab_size(vocab_size)
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
    if length is None and hasattr(texts, "__len__"):
        length = len(texts)  # type: ignore[arg-type]

    tok = Tokenizer(BPE(ignore_merges=True))
    tok.pre_tokenizer = llama3_pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - NUM_SPECIAL_TOKENS,
        min_frequency=min_frequency,
        show_progress=show_progress,
        initial_alphabet=ByteLevel.alphabet(),
        special_tokens=[],
    )
    num_docs = [0]
    tok.train_from_iterator(_non_empty(texts, num_docs), trainer=trainer, length=length)
    if num_docs[0] == 0:
        raise ValueError("empty corpus: the text iterator yielded no non-empty document; "
                         "check the corpus path and text field")
    # The trainer builds a fresh model; keep Llama 3's whole-pre-token shortcut on it.
    tok.model.ignore_merges = True
    assert tok.get_vocab_size() >= NUM_BYTES, f"learned vocab {tok.get_vocab_size()} < {NUM_BYTES} bytes"
    add_llama3_specials(tok)

    reached = tok.get_vocab_size()
    if reached < vocab_size:
        log.warning("the corpus (%d documents) supports only %d tokens at min_frequency=%d, not the "
                    "requested %d; lower min_frequency or add text to reach it",
                    num_docs[0], reached, min_frequency, vocab_size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wrap_llama3_style(tok).save_pretrained(str(out_dir))
    log.info("trained a %d-token BPE on %d documents -> %s", reached, num_docs[0], out_dir)
    return TrainedTokenizer(path=out_dir, vocab_size=reached, requested_vocab_size=vocab_size)


def train_sweep(texts_factory: Callable[[], Iterable[str]], vocab_sizes: Sequence[int], *,
                min_frequency: int = 2, out_dir: Path, show_progress: bool = True,
                length: int | None = None) -> list[TrainedTokenizer]:
    """One tokenizer per size, each in `out_dir/bbpe-{size}`; `texts_factory()` re-opens the corpus."""
    if not vocab_sizes:
        raise ValueError("vocab_sizes is empty; give at least one size")
    for v in vocab_sizes:
        _check_vocab_size(v)
    return [train_tokenizer(texts_factory(), vocab_size=v, min_frequency=min_frequency,
                            out_dir=Path(out_dir) / f"bbpe-{v}", show_progress=show_progress, length=length)
            for v in sorted(set(vocab_sizes))]
