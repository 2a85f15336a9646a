"""Failure injection for resume tests: `AZLLM_FAIL_AT_STEP=cpt_full` makes that step raise.

`resume` reruns the failed step in a fresh process without the variable, so the
same command line proves that a failed run picks up where it stopped. Failures inside
the CPT workers (`AZLLM_FAIL_AFTER_TRAIN_STEP` ...) are `azllm.train.faults`: the workers read
them from the environment they inherit from the step.
"""

from __future__ import annotations

import os

from azllm.train.faults import InjectedFailure

__all__ = ["ENV_VAR", "InjectedFailure", "maybe_fail"]

ENV_VAR = "AZLLM_FAIL_AT_STEP"


def maybe_fail(step_name: str) -> None:
    wanted = {s.strip() for s in os.environ.get(ENV_VAR, "").split(",") if s.strip()}
    if step_name in wanted:
        raise InjectedFailure(f"{ENV_VAR}={os.environ[ENV_VAR]}: failing step {step_name!r} on purpose")
