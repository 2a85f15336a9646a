"""Train a byte-level BPE tokenizer with Llama 3's settings.

Pipeline (as Llama 3): regex split with `LLAMA3_PATTERN` (isolated) -> ByteLevel without
prefix space -> BPE over the 256-byte alphabet with `ignore_merges=True`; ByteLevel
decoder; Llama 3's 256 special tokens appended *after* the learned vocabulary, so for a
requested `vocab_size` V the learned tokens are ids 0..V-257 (the 256 bytes first, then
one token per merge, in merge order) and the specials are ids V-256..V-1 in Meta's order
(`<|begin_of_text|>` = V-256, `<|eot_id|>` = V-247). `vocab_size` counts the specials.

A sweep trains once, at its largest size, and cuts the smaller ones from that training
(`derive_tokenizer`, exact: `azllm.tokenizer.truncate`).

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
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, trainers
from tokenizers.models import BPE
from tokenizers.pre_tokenizers import ByteLevel

from azllm.config import ordinary_permissions
from azllm.tokenizer.llama3 import (
    NUM_SPECIAL_TOKENS,
    add_llama3_specials,
    llama3_pre_tokenizer,
    wrap_llama3_style,
)
from azllm.tokenizer.truncate import can_truncate, truncate_bpe_model

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


def bpe_trainer(vocab_size: int, *, min_frequency: int = 2, show_progress: bool = True) -> trainers.BpeTrainer:
    """Llama 3's BPE trainer for a `vocab_size` that counts the 256 specials (added after training)."""
    return trainers.BpeTrainer(
        vocab_size=vocab_size - NUM_SPECIAL_TOKENS,
        min_frequency=min_frequency,
        show_progress=show_progress,
        initial_alphabet=ByteLevel.alphabet(),
        special_tokens=[],
    )


def _save(tok: Tokenizer, *, requested: int, out_dir: Path, what: str) -> TrainedTokenizer:
    """Append the specials, wrap, and save to `out_dir` through a temporary sibling (never half-written)."""
    tok.model.ignore_merges = True  # the trainer builds a fresh model; keep Llama 3's whole-pre-token shortcut
    assert tok.get_vocab_size() >= NUM_BYTES, f"learned vocab {tok.get_vocab_size()} < {NUM_BYTES} bytes"
    add_llama3_specials(tok)
    reached = tok.get_vocab_size()
    out_dir = Path(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "tokenizer.json").is_file():
        raise ValueError(f"{out_dir} exists and holds something other than a tokenizer; "
                         "give an empty or new directory (a tokenizer directory is replaced)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    wrap_llama3_style(tok).save_pretrained(str(tmp))
    ordinary_permissions(tmp)  # mkdtemp made it 0700
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    log.info("%s a %d-token BPE -> %s", what, reached, out_dir)
    return TrainedTokenizer(path=out_dir, vocab_size=reached, requested_vocab_size=requested)


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
    trainer = bpe_trainer(vocab_size, min_frequency=min_frequency, show_progress=show_progress)
    num_docs = [0]
    tok.train_from_iterator(_non_empty(texts, num_docs), trainer=trainer, length=length)
    if num_docs[0] == 0:
        raise ValueError("empty corpus: the text iterator yielded no non-empty document; "
                         "check the corpus path and text field")
    res = _save(tok, requested=vocab_size, out_dir=out_dir, what=f"trained on {num_docs[0]} documents")
    if not res.reached_target:
        log.warning("the corpus (%d documents) supports only %d tokens at min_frequency=%d, not the "
                    "requested %d; lower min_frequency or add text to reach it",
                    num_docs[0], res.vocab_size, min_frequency, vocab_size)
    return res


def derive_tokenizer(source: TrainedTokenizer, *, vocab_size: int, out_dir: Path) -> TrainedTokenizer:
    """The tokenizer a training at `vocab_size` would give, cut from `source`'s. Exact only when
    both come from the same corpus and `can_truncate` trainers (`azllm.tokenizer.truncate` says
    why); `train_sweep` checks that through `plan_sweep`."""
    _check_vocab_size(vocab_size)
    spec = json.loads((Path(source.path) / "tokenizer.json").read_text(encoding="utf-8"))
    model = truncate_bpe_model(spec["model"], vocab_size - NUM_SPECIAL_TOKENS)
    spec.update(model=model, added_tokens=[], post_processor=None)
    tok = Tokenizer.from_str(json.dumps(spec))
    res = _save(tok, requested=vocab_size, out_dir=out_dir, what=f"derived from bbpe-{source.requested_vocab_size}")
    if not res.reached_target:
        log.warning("bbpe-%d reached only %d tokens (its corpus ran out of pairs), so bbpe-%d has %d",
                    source.requested_vocab_size, source.vocab_size, vocab_size, res.vocab_size)
    return res


def plan_sweep(vocab_sizes: Sequence[int], *, min_frequency: int = 2) -> dict[int, list[int]]:
    """{size to train: smaller sizes cut from it}: sizes whose trainers `can_truncate` from the
    largest of their settings group share its training; the others train alone."""
    plan: dict[int, list[int]] = {}
    for v in sorted(set(vocab_sizes), reverse=True):
        small = bpe_trainer(v, min_frequency=min_frequency)
        big = next((b for b in plan if can_truncate(bpe_trainer(b, min_frequency=min_frequency), small)), None)
        if big is None:
            plan[v] = []
        else:
            plan[big].append(v)
    return plan


def train_sweep(texts_factory: Callable[[], Iterable[str]], vocab_sizes: Sequence[int], *,
                min_frequency: int = 2, out_dir: Path, show_progress: bool = True,
                length: int | None = None, derive: bool = True) -> list[TrainedTokenizer]:
    """One tokenizer per size, each in `out_dir/bbpe-{size}`, sorted by size.

    One training (one pass of `texts_factory()`) at the largest size; the smaller sizes are cut
    from it (`derive_tokenizer`), which equals training each (`plan_sweep`). `derive=False`
    trains every size separately (the benchmark's baseline).
    """
    if not vocab_sizes:
        raise ValueError("vocab_sizes is empty; give at least one size")
    for v in vocab_sizes:
        _check_vocab_size(v)
    sizes = sorted(set(vocab_sizes), reverse=True)
    plan = plan_sweep(sizes, min_frequency=min_frequency) if derive else {v: [] for v in sizes}
    out: list[TrainedTokenizer] = []
    for big, smaller in plan.items():
        source = train_tokenizer(texts_factory(), vocab_size=big, min_frequency=min_frequency,
                                 out_dir=Path(out_dir) / f"bbpe-{big}", show_progress=show_progress, length=length)
        out.append(source)
        out += [derive_tokenizer(source, vocab_size=v, out_dir=Path(out_dir) / f"bbpe-{v}") for v in smaller]
    return sorted(out, key=lambda t: t.requested_vocab_size)
