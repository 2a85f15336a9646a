"""Corpus preparation: sources -> clean -> filter -> exact dedup -> weights -> train/validation.

One streaming pass; memory is one SHA-1 digest (20 bytes) per kept document.

    >>> from azllm.config import DataConfig
    >>> prepared = prepare_corpus(DataConfig(max_documents=300), Path("/tmp/azdata"))
    >>> prepared.stats["train"]["documents"]

Outputs in `out_dir`: `train.jsonl`, `validation.jsonl` and, with `other_domain`
set, `other_domain.jsonl`, one `{"text": ...}` per line. They appear together at
the end (temp files renamed), so a failed run leaves no half-written file.

Order of reading: explicit validation sources, then `other_domain`, then the
corpus. Evaluation text is read first so that a document in both is dropped from
*train* (counted as `duplicate`): the held-out set stays fixed when the corpus changes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from tqdm import tqdm

from azllm.config import DataConfig, resolve_path
from azllm.data.clean import clean_text, latin_fraction
from azllm.data.readers import BadLines, DataError, iter_documents
from azllm.data.stats import add_document, empty_stats

DROP_REASONS = ("too_short", "non_latin", "duplicate", "bad_lines")


@dataclass(frozen=True)
class PreparedCorpus:
    train_path: Path
    validation_path: Path
    other_domain_path: Path | None
    stats: dict[str, Any]
    """Per split: documents/bytes/words/chars; `dropped`: counts by reason; `sources`: read/kept each."""


@dataclass
class _Filter:
    """Clean + filter + dedup state shared by every source of one preparation."""

    cfg: DataConfig
    progress: Any
    seen: set[bytes] = field(default_factory=set)
    dropped: Counter = field(default_factory=Counter)
    bad: BadLines = field(default_factory=BadLines)
    seen_train: int = 0
    """Unique documents that went to train (before weighting)."""

    def accept(self, raw: str) -> tuple[str, bytes] | None:
        """The cleaned text and its digest, or None (the reason is counted in `dropped`)."""
        self.progress.update(1)
        text = clean_text(raw)
        if len(text) < self.cfg.min_chars:
            self.dropped["too_short"] += 1
            return None
        if latin_fraction(text) < self.cfg.min_latin_fraction:
            self.dropped["non_latin"] += 1
            return None
        digest = hashlib.sha1(text.encode("utf-8")).digest()
        if digest in self.seen:
            self.dropped["duplicate"] += 1
            return None
        self.seen.add(digest)
        return text, digest

    def raw_documents(self, source: str) -> Iterator[str]:
        return iter_documents(resolve_path(source), text_field=self.cfg.text_field,
                              skip_bad_lines=self.cfg.skip_bad_lines, counter=self.bad)


class AtomicJsonl:
    """JSONL outputs written to temp files in `out_dir`, renamed into place only on success.

    Why: a step that dies half-way must not leave a plausible-looking truncated
    train.jsonl for a retry or the next step to pick up.
    """

    def __init__(self, out_dir: Path, names: list[str]) -> None:
        self.out_dir = out_dir
        self.names = names
        self._files: dict[str, IO[str]] = {}

    def __enter__(self) -> Self:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name in self.names:
            self._files[name] = self._open_temp(name)
        return self

    def _open_temp(self, name: str) -> IO[str]:
        return tempfile.NamedTemporaryFile(  # closed in __exit__, after the last write
            "w", encoding="utf-8", dir=self.out_dir, prefix=f".{name}.", suffix=".tmp", delete=False)

    def write(self, name: str, record: dict[str, Any]) -> None:
        self._files[name].write(json.dumps(record, ensure_ascii=False) + "\n")

    def drop_lines(self, name: str, unwanted: dict[str, Any]) -> int:
        """Rewrite the temp file of `name` without lines equal to `unwanted`; returns how many went."""
        old = self._files[name]
        old.close()
        new = self._files[name] = self._open_temp(name)
        target = json.dumps(unwanted, ensure_ascii=False) + "\n"
        removed = 0
        with open(old.name, encoding="utf-8") as f:
            for line in f:
                if line == target:
                    removed += 1
                else:
                    new.write(line)
        Path(old.name).unlink()
        return removed

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for f in self._files.values():
            f.close()
        for name, f in self._files.items():
            if exc_type is None:
                os.chmod(f.name, 0o644)  # temp files are created 0600; outputs are shared with later steps
                os.replace(f.name, self.out_dir / name)
            else:
                Path(f.name).unlink(missing_ok=True)


def unit_hash(seed: int, purpose: str, digest: bytes) -> float:
    """A deterministic uniform number in [0, 1) for a document: streaming, reproducible sampling."""
    h = hashlib.sha1(f"{seed}:{purpose}:".encode() + digest).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def copies_for(weight: float, seed: int, digest: bytes) -> int:
    """How many times a document of a source with `weight` goes to train.

    floor(weight) copies, plus one more with probability frac(weight), decided by
    the document's hash: weight 3.0 -> 3 copies, 0.25 -> a fixed quarter of documents once.
    """
    whole = math.floor(weight)
    return whole + (unit_hash(seed, "weight", digest) < weight - whole)


def prepare_corpus(cfg: DataConfig, out_dir: Path) -> PreparedCorpus:
    """Write train/validation(/other_domain) JSONL into `out_dir` and return paths and stats."""
    out_dir = Path(out_dir)
    names = ["train.jsonl", "validation.jsonl"] + (["other_domain.jsonl"] if cfg.other_domain else [])
    stats: dict[str, Any] = {name.removesuffix(".jsonl"): empty_stats() for name in names}
    with AtomicJsonl(out_dir, names) as out, \
            tqdm(desc="prepare corpus", unit="doc", mininterval=2.0) as progress:
        filt = _Filter(cfg, progress)
        for source in cfg.validation:
            _write_all(filt, source, out, "validation.jsonl", stats["validation"])
        if cfg.other_domain:
            _write_all(filt, cfg.other_domain, out, "other_domain.jsonl", stats["other_domain"])
        stats["sources"], spare = _write_corpus(filt, out, stats)
        if stats["validation"]["documents"] == 0 and spare and filt.seen_train > 1:
            _move_to_validation(spare, out, stats)
        stats["dropped"] = {reason: filt.dropped[reason] for reason in DROP_REASONS}
        stats["dropped"]["bad_lines"] = filt.bad.count
        stats["bad_line_examples"] = list(filt.bad.examples)
        _check_not_empty(cfg, stats)
    return PreparedCorpus(
        train_path=out_dir / "train.jsonl",
        validation_path=out_dir / "validation.jsonl",
        other_domain_path=out_dir / "other_domain.jsonl" if cfg.other_domain else None,
        stats=stats,
    )


def _write_all(filt: _Filter, source: str, out: AtomicJsonl, name: str, split_stats: dict[str, int]) -> None:
    """An evaluation source: every accepted document once, no split, no weight."""
    for raw in filt.raw_documents(source):
        kept = filt.accept(raw)
        if kept:
            out.write(name, {"text": kept[0]})
            add_document(split_stats, kept[0])


def _write_corpus(filt: _Filter, out: AtomicJsonl,
                  stats: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """The training sources: split (unless explicit validation), weight, honour max_documents.

    Also returns the train document with the lowest split hash: the one moved to
    validation when a small corpus leaves the hash-based hold-out empty.
    """
    cfg = filt.cfg
    weights = cfg.corpus_weights or (1.0,) * len(cfg.corpus)
    hold_out = not cfg.validation
    budget = cfg.max_documents or math.inf
    per_source = []
    spare: tuple[float, str] | None = None
    for source, weight in zip(cfg.corpus, weights):
        read = kept_count = 0
        for raw in filt.raw_documents(source):
            if budget <= 0:
                break
            budget -= 1
            read += 1
            kept = filt.accept(raw)
            if not kept:
                continue
            kept_count += 1
            text, digest = kept
            u = unit_hash(cfg.seed, "split", digest)
            if hold_out and u < cfg.validation_fraction:
                out.write("validation.jsonl", {"text": text})
                add_document(stats["validation"], text)
                continue
            filt.seen_train += 1
            if hold_out and (spare is None or u < spare[0]):
                spare = (u, text)
            for _ in range(copies_for(weight, cfg.seed, digest)):
                out.write("train.jsonl", {"text": text})
                add_document(stats["train"], text)
        per_source.append({"source": source, "weight": weight, "read": read, "kept": kept_count})
    return per_source, spare[1] if spare else None


def _move_to_validation(text: str, out: AtomicJsonl, stats: dict[str, Any]) -> None:
    """Guarantee a non-empty validation split: move one document (all its weighted copies) out of train."""
    removed = out.drop_lines("train.jsonl", {"text": text})
    for _ in range(removed):
        stats["train"] = _subtract(stats["train"], text)
    out.write("validation.jsonl", {"text": text})
    add_document(stats["validation"], text)


def _subtract(split_stats: dict[str, int], text: str) -> dict[str, int]:
    one = empty_stats()
    add_document(one, text)
    return {key: split_stats[key] - one[key] for key in split_stats}


def _check_not_empty(cfg: DataConfig, stats: dict[str, Any]) -> None:
    if stats["train"]["documents"] == 0:
        raise DataError(
            f"no training documents left after cleaning sources {list(cfg.corpus)}: dropped "
            f"{stats['dropped']}, {stats['validation']['documents']} held out for validation "
            f"(min_chars={cfg.min_chars}, min_latin_fraction={cfg.min_latin_fraction}, "
            f"text_field={cfg.text_field!r}); check the sources and these settings"
        )
    if stats["validation"]["documents"] == 0:
        where = (f"validation sources {list(cfg.validation)} have no documents left after cleaning"
                 if cfg.validation else
                 f"the {cfg.validation_fraction} hold-out of {stats['train']['documents']} training "
                 "documents is empty")
        raise DataError(f"validation split is empty: {where}; raise data.validation_fraction, "
                        f"give more data, or set data.validation (dropped: {stats['dropped']})")
