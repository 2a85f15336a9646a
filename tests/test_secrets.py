"""Secrets never end up in a run: a fake HF token and AWS key in the environment of a flow run.

The tiny preset's one-arm run that fails mid-CPT and is resumed (`cpt_failure_resumed` in
conftest.py, shared with the resume test) has ``HF_TOKEN`` and ``AWS_SECRET_ACCESS_KEY`` set to
fake values; this searches, for both values:
every artifact of every task (pickled and repr), every card's HTML, every task's
stdout and stderr, the console output of the run, and every file the run left in the
local datastore (gzip-compressed blobs decompressed; tar archives are read raw).
Plus the redaction helpers. A few minutes on 2 cores (it is a whole flow run).

    .venv/bin/python -m pytest -q tests/test_secrets.py
"""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

from azllm.compute.secrets import find_secrets, hf_token, redact, secret_values
from conftest import FAKE_SECRETS as FAKE
from conftest import REPO_ROOT


def test_redaction_helpers():
    env = {**FAKE, "AWS_ACCESS_KEY_ID": "testing"}  # too short to be treated as a secret
    assert hf_token(env) == FAKE["HF_TOKEN"]
    assert hf_token({"HUGGING_FACE_HUB_TOKEN": "hf_x" * 3}) == "hf_x" * 3 and hf_token({}) is None
    assert set(secret_values(env)) == {"HF_TOKEN", "AWS_SECRET_ACCESS_KEY"}
    line = f"Authorization: Bearer {FAKE['HF_TOKEN']} key={FAKE['AWS_SECRET_ACCESS_KEY']} user=testing"
    assert redact(line, env) == "Authorization: Bearer <HF_TOKEN> key=<AWS_SECRET_ACCESS_KEY> user=testing"
    assert find_secrets(line.encode(), env) == ["HF_TOKEN", "AWS_SECRET_ACCESS_KEY"]
    assert find_secrets(redact(line, env), env) == []


def _leaks(blob: bytes | str, where: str) -> list[str]:
    return [f"{name} in {where}" for name in find_secrets(blob, FAKE)]


def _file_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError):
            return data
    return data


def test_fake_secrets_appear_nowhere_in_the_run(cpt_failure_resumed):
    from metaflow.cards import get_cards
    from metaflow.plugins.cards.exception import CardNotPresentException

    run, failed_output, resumed_output = cpt_failure_resumed
    console = failed_output + resumed_output
    leaks = _leaks(console, "the console output")
    counts = {"artifacts": 0, "cards": 0, "log_bytes": 0, "files": 0}
    for step in run:
        for task in step:
            for artifact in task:
                try:
                    value = artifact.data
                except Exception as e:  # noqa: BLE001 - an unreadable artifact is itself worth a look
                    value = f"<unreadable: {e}>"
                where = f"artifact {task.pathspec}/{artifact.id}"
                leaks += _leaks(repr(value), where)
                try:
                    leaks += _leaks(pickle.dumps(value), where + " (pickled)")
                except Exception:  # noqa: BLE001, S110 - repr was searched
                    pass
                counts["artifacts"] += 1
            try:
                cards = list(get_cards(task))
            except CardNotPresentException:  # read from disk below
                cards = []
            for card in cards:
                leaks += _leaks(card.get(), f"card {card.type} of {task.pathspec}")
                counts["cards"] += 1
            for stream in ("stdout", "stderr"):
                text = getattr(task, stream) or ""
                leaks += _leaks(text, f"{stream} of {task.pathspec}")
                counts["log_bytes"] += len(text)
    root = Path(os.environ["METAFLOW_DATASTORE_SYSROOT_LOCAL"])
    for path in root.rglob("*"):
        if path.is_file():
            leaks += _leaks(_file_bytes(path), f"datastore file {path}")
            counts["files"] += 1
    # Metaflow 2.19 writes local cards under the .metaflow found from the working directory
    # (the repository here), not under METAFLOW_DATASTORE_SYSROOT_LOCAL where the client looks
    for cards_root in {root / ".metaflow" / "mf.cards", REPO_ROOT / ".metaflow" / "mf.cards"}:
        for path in (cards_root / "AzLLMFlow" / "runs" / run.id).rglob("*.html"):
            leaks += _leaks(path.read_bytes(), f"card file {path}")
            counts["cards"] += 1
    assert not leaks, leaks
    # the search covered something: artifacts, cards, logs and files of this run
    assert counts["artifacts"] > 20 and counts["cards"] >= 5, counts
    assert counts["log_bytes"] > 0 and counts["files"] > 20, counts
