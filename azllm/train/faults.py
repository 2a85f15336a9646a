"""Failure injection in the CPT workers, for resume tests: never set in a normal run.

``AZLLM_FAIL_AFTER_TRAIN_STEP=cpt_full:3`` makes the workers of phase ``full`` (flow step
``cpt_full``) raise right after training step 3's checkpoint is complete. The workers read
it from their environment, so it lives in no spec; :func:`azllm.train.launcher.run_cpt_phase`
sets it for them when called with ``fail_after_step``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

TRAIN_ENV_VAR = "AZLLM_FAIL_AFTER_TRAIN_STEP"


class InjectedFailure(RuntimeError):
    """Raised on purpose; never in a normal run."""


def fail_after_train_step(step_name: str) -> int | None:
    """The training step after which `step_name`'s workers should fail, from AZLLM_FAIL_AFTER_TRAIN_STEP."""
    for item in os.environ.get(TRAIN_ENV_VAR, "").split(","):
        name, _, n = item.strip().partition(":")
        if name == step_name and n.isdigit():
            return int(n)
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
