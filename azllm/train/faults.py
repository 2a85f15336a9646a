"""Failure injection, for resume tests: never set in a normal run. Everything is read from the
environment, which each flow step, torchrun and its workers inherit.

``AZLLM_FAIL_AT_STEP=sft_lora`` makes that flow step raise as it begins (:func:`maybe_fail`, called by
``azllm.steps.step.begin_step``); ``resume`` reruns it in a fresh process without the variable, so the
same command line proves that a failed run picks up where it stopped.

``AZLLM_FAIL_AFTER_TRAIN_STEP=cpt_full:3`` makes the workers of phase ``full`` (flow step
``cpt_full``) raise right after training step 3's checkpoint is complete. The workers read
it from their environment, which they inherit from the flow step (or any launching process),
so it lives in no spec and passes through no function; tests that call
:func:`azllm.train.launcher.run_cpt_phase` directly give it as ``env={TRAIN_ENV_VAR: "cpt_full:3"}``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

ENV_VAR = "AZLLM_FAIL_AT_STEP"
"""Comma-separated flow step names that raise as they begin."""
TRAIN_ENV_VAR = "AZLLM_FAIL_AFTER_TRAIN_STEP"
AT_STEP_ENV_VAR = "AZLLM_FAIL_AT_TRAIN_STEP"
"""``cpt_full:5``: the workers raise as training step 5 begins (before it trains or saves)."""
KILL_ENV_VAR = "AZLLM_SIGKILL_MID_UPLOAD"
"""``cpt_full:4:1``: global rank 1 SIGKILLs itself mid-way through uploading step 4's checkpoint
to the checkpoint store, once the previous checkpoint is complete there."""


class InjectedFailure(RuntimeError):
    """Raised on purpose; never in a normal run."""


def maybe_fail(step_name: str) -> None:
    """In a flow step, as it begins: raise if AZLLM_FAIL_AT_STEP names it."""
    wanted = {s.strip() for s in os.environ.get(ENV_VAR, "").split(",") if s.strip()}
    if step_name in wanted:
        raise InjectedFailure(f"{ENV_VAR}={os.environ[ENV_VAR]}: failing step {step_name!r} on purpose")


def fail_after_train_step(step_name: str) -> int | None:
    """The training step after which `step_name`'s workers should fail, from AZLLM_FAIL_AFTER_TRAIN_STEP."""
    for item in os.environ.get(TRAIN_ENV_VAR, "").split(","):
        name, _, n = item.strip().partition(":")
        if name == step_name and n.isdigit():
            return int(n)
    return None


def maybe_fail_at(phase: str, step: int) -> None:
    """In the worker, as ``step`` begins: raise if ``AZLLM_FAIL_AT_TRAIN_STEP`` asks for it."""
    for item in os.environ.get(AT_STEP_ENV_VAR, "").split(","):
        name, _, n = item.strip().partition(":")
        if name == f"cpt_{phase}" and n.isdigit() and int(n) == step:
            raise InjectedFailure(f"{AT_STEP_ENV_VAR}={os.environ[AT_STEP_ENV_VAR]}: injected failure as "
                                  f"step {step} begins")


def sigkill_mid_upload(phase: str, rank: int) -> int | None:
    """The step whose upload global rank ``rank`` of ``phase`` must die in (``AZLLM_SIGKILL_MID_UPLOAD``)."""
    for item in os.environ.get(KILL_ENV_VAR, "").split(","):
        parts = item.strip().split(":")
        if len(parts) == 3 and parts[0] == f"cpt_{phase}" and parts[1].isdigit() and parts[2] == str(rank):
            return int(parts[1])
    return None


def maybe_fail_after(phase: str, step: int, settle: Callable[[], None] | None = None) -> None:
    """In the worker, after ``step``'s checkpoint: raise if the environment asks for it.

    ``settle`` runs first (the worker finishes the checkpoint's registration and meets the
    other ranks), so the failure comes after a complete, registered checkpoint and not while
    torchrun is already tearing down rank 0's upload because another rank raised.
    """
    if fail_after_train_step(f"cpt_{phase}") == step:
        if settle is not None:
            settle()
        raise InjectedFailure(f"{TRAIN_ENV_VAR}={os.environ[TRAIN_ENV_VAR]}: injected failure after "
                              f"the checkpoint of step {step}")
