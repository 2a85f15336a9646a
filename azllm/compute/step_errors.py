"""The flow's error boundary: an expected failure in a step is one line, not a traceback.

:func:`expected_failures` is a Metaflow user step decorator that
:class:`azllm.compute.mutator.compute_from_profile` puts on every step. When the step raises
an expected failure (bad input, a missing or unwritable path, disk full, file too large:
:func:`azllm.config.errors.describe_failure`), it raises a ``MetaflowException`` with that one
line, which Metaflow prints without a traceback; anything else (a bug) keeps its traceback,
and so does everything with ``AZLLM_DEBUG=1``. ``@retry`` still retries either. The command
line has the same boundary (``azllm.cli.run_command``).
"""

from __future__ import annotations

import os

from metaflow import user_step_decorator


@user_step_decorator
def expected_failures(step_name, flow, inputs):
    from metaflow.exception import MetaflowException

    from azllm.config.errors import describe_failure

    try:
        yield
    except MetaflowException:
        raise
    except Exception as e:  # noqa: BLE001 - sorted into expected failures and bugs below
        message = describe_failure(e)
        if message is None or os.environ.get("AZLLM_DEBUG", "") not in ("", "0"):
            raise
        raise MetaflowException(f"step {step_name}: {message} (AZLLM_DEBUG=1 shows the traceback)") from None
