"""The CPT metrics file (``metrics.jsonl``): what the workers append and cards, inspection and
the flow read back (docs/DESIGN.md §6).

Rank 0 of the workers appends one JSON line per logged step and one ``event`` line per
start, resume and export; the readers here tolerate a line being written right now.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
"""Under a phase's work dir: one JSON line per logged step, plus `event` lines (start, resume); rank 0 writes it."""


def read_metrics_records(metrics_path: str | Path) -> list[dict[str, Any]]:
    """Every complete line of a metrics file; a line being written right now is skipped, so the
    file can be read while the workers append to it (the live card does)."""
    path = Path(metrics_path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def step_history(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-step records in step order; after a resume the last record of a step wins."""
    by_step = {rec["step"]: rec for rec in records if "step" in rec and "loss" in rec and "event" not in rec}
    return [by_step[s] for s in sorted(by_step)]


def read_metrics(metrics_path: str | Path) -> dict[str, Any]:
    """Summarise a metrics JSONL: per-step history (last record per step wins) + headline numbers."""
    records = read_metrics_records(metrics_path)
    resumes = [rec["resume_step"] for rec in records if rec.get("event") == "resume"]
    start = next((rec for rec in reversed(records) if rec.get("event") == "start"), {})
    history = step_history(records)
    if not history:
        return {"history": [], "steps": 0, "resumed_at_steps": resumes}
    last = history[-1]
    rates = [h["tokens_per_s"] for h in history[1:]] or [history[0]["tokens_per_s"]]  # step 1 warms up
    mfus = [h["mfu"] for h in history if h["mfu"] is not None]
    return {"first_loss": history[0]["loss"], "final_loss": last["loss"], "steps": last["step"],
            "tokens": last["tokens"], "tokens_per_s": sum(rates) / len(rates),
            "peak_mem_gib": max(h["peak_mem_gib"] for h in history),
            "mfu": sum(mfus) / len(mfus) if mfus else None,
            "num_params": start.get("num_params"), "num_trainable_params": start.get("num_trainable_params"),
            "world_size": start.get("world_size"), "device": start.get("device"),
            "params_are_dtensors": start.get("params_are_dtensors"),
            "local_numel_rank0": start.get("local_numel_rank0"),
            "resumed_at_steps": resumes, "history": history}


def append_record(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON line (rank 0 only): whole lines, so a concurrent reader skips at most the last."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def drop_steps_after(path: str | Path, step: int) -> int:
    """On a resume from ``step``'s checkpoint (rank 0): remove the step records logged after it,
    which the resumed run logs again, so metrics.jsonl holds each step once. Event lines stay;
    a half-written last line goes too. Rewritten through a temporary file; returns the number dropped."""
    path = Path(path)
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if "event" not in rec and isinstance(rec.get("step"), int) and rec["step"] > step:
            dropped += 1
            continue
        kept.append(line + "\n")
    if dropped:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(kept), encoding="utf-8")
        os.replace(tmp, path)
    return dropped
