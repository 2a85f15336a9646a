"""Chat records for LoRA SFT: validate, dedup, split, write `sft_train.jsonl` / `sft_validation.jsonl`.

A record is `{"messages": [{"role": ..., "content": ...}, ...]}` with roles
system/user/assistant, at least one user turn, and the assistant speaking last
(the loss is on assistant tokens, so a record without a final answer teaches nothing).

    >>> from azllm.config import DataConfig
    >>> prepare_sft(DataConfig(), Path("/tmp/azdata")).stats["train"]["records"]
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azllm.config import DataConfig, resolve_path
from azllm.data.clean import count_words
from azllm.data.corpus import AtomicJsonl, unit_hash
from azllm.data.layout import SFT_TRAIN, SFT_VALIDATION
from azllm.data.readers import BadLines, DataError, iter_records

ROLES = ("system", "user", "assistant")
Messages = list[dict[str, str]]
"""One conversation: [{"role": ..., "content": ...}, ...], the assistant speaking last."""


@dataclass(frozen=True)
class PreparedSft:
    train_path: Path
    validation_path: Path
    stats: dict[str, Any]
    """Per split: records, turns (messages), words (of all message contents); plus dropped counts."""


def validate_chat_record(record: Any, where: str) -> dict[str, Any]:
    """Return the record normalised (NFC contents, only role/content kept); DataError naming `where`."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: chat record must be a JSON object, got {type(record).__name__}")
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: field 'messages' must be a non-empty list of {{role, content}}, "
                        f"got {_describe(messages)}")
    clean = [_validate_message(m, f"{where}: messages[{i}]") for i, m in enumerate(messages)]
    roles = [m["role"] for m in clean]
    if "user" not in roles:
        raise DataError(f"{where}: messages have no 'user' turn (roles: {roles})")
    if roles[-1] != "assistant":
        raise DataError(f"{where}: the last message must be from the assistant, got {roles[-1]!r} "
                        f"(roles: {roles})")
    out: dict[str, Any] = {"messages": clean}
    if isinstance(record.get("source"), str):
        out["source"] = record["source"]
    return out


def read_chat_records(source: str, *, skip_bad_lines: bool = False,
                      counter: BadLines | None = None) -> list[dict[str, Any]]:
    """Validated records from a JSONL file (dir, glob, s3://) or an HF dataset id."""
    records = []
    for where, record in iter_records(source, skip_bad_lines=skip_bad_lines, counter=counter):
        try:
            records.append(validate_chat_record(record, where))
        except DataError as e:
            if not skip_bad_lines:
                raise
            if counter is not None:
                counter.add(e)
    return records


def read_chat_messages(source: str | Path) -> list[Messages]:
    """Validated chat records as plain message lists, the form tokenizers and trainers take."""
    return [[{"role": m["role"], "content": m["content"]} for m in r["messages"]]
            for r in read_chat_records(str(source))]


@dataclass(frozen=True)
class SftSplits:
    """Validated, deduplicated chat records split into train and validation (nothing written yet)."""

    train: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    bad: BadLines
    overlap: int
    """Train records dropped because the validation file holds them too."""


def read_sft(cfg: DataConfig) -> SftSplits:
    """Read, validate, dedup and split the chat records: DataError naming the file and line.

    Called before the corpus work (``azllm.data.stage``), so a missing or broken ``sft_train``
    stops the data stage before anything is written.
    """
    bad = BadLines()
    train = _dedup(_read(cfg.sft_train, cfg, bad))
    if cfg.sft_validation:
        validation = _dedup(_read(cfg.sft_validation, cfg, bad))
        held = {_digest(r) for r in validation}
        overlap = sum(_digest(r) in held for r in train)
        train = [r for r in train if _digest(r) not in held]
    else:
        train, validation = _hold_out(train, cfg.sft_validation_fraction, cfg.seed)
        overlap = 0
    if not train or not validation:
        raise DataError(f"SFT data too small: {len(train)} train and {len(validation)} validation records "
                        f"from {cfg.sft_train!r}{' and ' + repr(cfg.sft_validation) if cfg.sft_validation else ''}; "
                        "need at least one of each")
    return SftSplits(train, validation, bad, overlap)


def prepare_sft(cfg: DataConfig, out_dir: Path, splits: SftSplits | None = None) -> PreparedSft:
    """Write `sft_train.jsonl` and `sft_validation.jsonl` into `out_dir` (atomically); ``splits``
    from :func:`read_sft` if already read."""
    out_dir = Path(out_dir)
    splits = splits or read_sft(cfg)
    train, validation, bad = splits.train, splits.validation, splits.bad
    names = [SFT_TRAIN, SFT_VALIDATION]
    with AtomicJsonl(out_dir, names) as out:
        for name, records in zip(names, (train, validation)):
            for r in records:
                out.write(name, r)
    stats = {"train": _split_stats(train), "validation": _split_stats(validation),
             "dropped": {"bad_lines": bad.count, "validation_overlap": splits.overlap},
             "bad_line_examples": list(bad.examples)}
    return PreparedSft(out_dir / names[0], out_dir / names[1], stats)


def _validate_message(message: Any, where: str) -> dict[str, str]:
    if not isinstance(message, dict):
        raise DataError(f"{where}: must be an object with 'role' and 'content', got {_describe(message)}")
    role, content = message.get("role"), message.get("content")
    if role not in ROLES:
        raise DataError(f"{where}: role {role!r} is not one of {list(ROLES)}")
    if not isinstance(content, str) or not content.strip():
        raise DataError(f"{where}: 'content' must be a non-empty string, got {_describe(content)}")
    return {"role": role, "content": unicodedata.normalize("NFC", content)}


def _describe(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if value is not None else "nothing"
    return text if len(text) <= 60 else text[:57] + "..."


def _read(source: str, cfg: DataConfig, bad: BadLines) -> list[dict[str, Any]]:
    return read_chat_records(resolve_path(source), skip_bad_lines=cfg.skip_bad_lines, counter=bad)


def _digest(record: dict[str, Any]) -> bytes:
    """Identity of a conversation: its messages only (the `source` tag does not make it new)."""
    return hashlib.sha1(json.dumps(record["messages"], ensure_ascii=False, sort_keys=True).encode()).digest()


def _dedup(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[bytes] = set()
    out = []
    for r in records:
        d = _digest(r)
        if d not in seen:
            seen.add(d)
            out.append(r)
    return out


def _hold_out(records: list[dict[str, Any]], fraction: float,
              seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The `fraction` of records with the lowest hash (at least 1) is validation; order is kept.

    Hash-ranked rather than shuffled so adding records elsewhere barely moves the split.
    """
    n_val = max(1, round(fraction * len(records)))
    ranked = sorted(range(len(records)), key=lambda i: unit_hash(seed, "sft-split", _digest(records[i])))
    chosen = set(ranked[:n_val])
    train = [r for i, r in enumerate(records) if i not in chosen]
    validation = [r for i, r in enumerate(records) if i in chosen]
    return train, validation


def _split_stats(records: list[dict[str, Any]]) -> dict[str, int]:
    return {
        "records": len(records),
        "turns": sum(len(r["messages"]) for r in records),
        "words": sum(count_words(m["content"]) for r in records for m in r["messages"]),
    }
