"""Failure injection for resume tests: `AZLLM_FAIL_AT_STEP=cpt_full` makes that step raise.

`resume` reruns the failed step in a fresh process without the variable, so the
same command line proves that a failed run picks up where it stopped.
"""

from __future__ import annotations

import os

ENV_VAR = "AZLLM_FAIL_AT_STEP"
TRAIN_ENV_VAR = "AZLLM_FAIL_AFTER_TRAIN_STEP"
"""`cpt_full:3` makes the CPT workers of that flow step raise right after training step 3's checkpoint."""


class InjectedFailure(RuntimeError):
    """Raised on purpose; never in a normal run."""


def maybe_fail(step_name: str) -> None:
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
