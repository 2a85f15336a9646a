"""Preference pairs for DPO: a user's own JSONL, validated like the chat records (file, line, field, fix).

One pair per line: `prompt` (a string, one user turn, or chat messages ending with a user
turn), `chosen` and `rejected` (a string, or chat messages holding one assistant turn), as
in TRL's "conversational preference" format:

    {"prompt": "Balansımı necə yoxlaya bilərəm?", "chosen": "*100# yığın ...", "rejected": "Balance ..."}
    {"prompt": [{"role": "user", "content": "..."}], "chosen": [{"role": "assistant", "content": "..."}], ...}

A line of the wrong shape (not JSON, a field missing or of the wrong type, a role out of
place) stops with a DataError naming file:line, the field and the fix. A pair that is well
formed but teaches nothing (an empty `chosen` or `rejected`, `chosen` identical to `rejected`)
is skipped and counted with its line, so one bad line does not stop a long file; the prompt
and answer length limits need the tokenizer and are checked in `azllm.train.preference`.

    >>> pairs = read_preference_pairs("pairs.jsonl")
    >>> len(pairs.pairs), pairs.skipped
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from azllm.data.readers import DataError, iter_records
from azllm.data.sft import ROLES, Messages

FIELDS = ("prompt", "chosen", "rejected")
MAX_EXAMPLES = 5


@dataclass
class PreferencePairs:
    pairs: list[dict[str, Any]]
    """{"prompt": Messages (ends with a user turn), "chosen": str, "rejected": str, "where": str}."""
    skipped: Counter = field(default_factory=Counter)
    """Pairs left out, by reason ("empty chosen", "prompt longer than ... tokens", ...)."""
    examples: list[str] = field(default_factory=list)
    """The first few skipped pairs: `where: reason`."""

    def skip(self, where: str, reason: str) -> None:
        self.skipped[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{where}: {reason}")


def _prompt_messages(value: Any, where: str) -> Messages:
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"{where}: field 'prompt' is empty; give the user's question")
        return [{"role": "user", "content": unicodedata.normalize("NFC", value)}]
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: field 'prompt' must be a string or a non-empty list of "
                        f"{{role, content}} messages, got {type(value).__name__}")
    messages = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise DataError(f"{where}: prompt[{i}] must be {{\"role\": one of {list(ROLES)}, \"content\": "
                            f"string}}, got {str(m)[:60]}")
        if not m["content"].strip():
            raise DataError(f"{where}: prompt[{i}] has an empty 'content'; remove the turn or fill it")
        messages.append({"role": m["role"], "content": unicodedata.normalize("NFC", m["content"])})
    if messages[-1]["role"] != "user":
        raise DataError(f"{where}: field 'prompt' must end with a user turn, got {messages[-1]['role']!r}; "
                        "put the answer in 'chosen' and 'rejected'")
    return messages


def _answer_text(value: Any, name: str, where: str) -> str:
    """The answer of `chosen`/`rejected`: a string, or messages holding one assistant turn."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value.strip())
    if isinstance(value, list):
        turns = [m for m in value if isinstance(m, dict)]
        if len(turns) == len(value) == 1 and turns[0].get("role") == "assistant" \
                and isinstance(turns[0].get("content"), str):
            return unicodedata.normalize("NFC", turns[0]["content"].strip())
    raise DataError(f"{where}: field {name!r} must be a string or [{{\"role\": \"assistant\", \"content\": "
                    f"...}}] (one assistant turn), got {str(value)[:60]}")


def validate_preference_pair(record: Any, where: str) -> dict[str, Any]:
    """The pair normalised (NFC, answers as strings); DataError naming `where` and the field."""
    missing = [name for name in FIELDS if name not in record]
    if missing:
        raise DataError(f"{where}: missing field(s) {missing}; a preference pair has {list(FIELDS)} "
                        f"(got {sorted(record)})")
    return {"prompt": _prompt_messages(record["prompt"], where),
            "chosen": _answer_text(record["chosen"], "chosen", where),
            "rejected": _answer_text(record["rejected"], "rejected", where), "where": where}


def read_preference_pairs(source: str) -> PreferencePairs:
    """Validated pairs of a JSONL file (dir, glob, s3://) or HF dataset id; pairs that teach nothing
    are skipped and counted. DataError on a malformed line, or when no pair is left."""
    out = PreferencePairs(pairs=[])
    for where, record in iter_records(source):
        pair = validate_preference_pair(record, where)
        if not pair["chosen"]:
            out.skip(where, "empty chosen")
        elif not pair["rejected"]:
            out.skip(where, "empty rejected")
        elif pair["chosen"] == pair["rejected"]:
            out.skip(where, "chosen identical to rejected")
        else:
            out.pairs.append(pair)
    if not out.pairs:
        raise DataError(f"{source}: no usable preference pair ({sum(out.skipped.values())} skipped: "
                        f"{dict(out.skipped)}; e.g. {out.examples[:3]}); fix the pairs or set "
                        "[preference] pairs_path = \"\" to build pairs from the run")
    return out
