"""What every flow step does first: a one-line banner, failure injection, the typed config; and
scratch directories for the files a step stores.

The banner's words are the step's own docstring (its first paragraph), read through Metaflow's
`current.step_name`, so each step is described once, in the flow file.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from azllm.config import PipelineConfig, load_pipeline_config
from azllm.train.faults import maybe_fail


def begin_step(config: Any) -> PipelineConfig:
    """Print what the step does, honour failure injection, return the typed config.

    Each task runs in its own process, so the line with the step's duration is printed when
    that process exits (after Metaflow has stored the artifacts), without a wrapper in the flow.
    """
    from metaflow import current

    name = current.step_name
    cfg = load_pipeline_config(config)
    print(f"[azllm {time.strftime('%H:%M:%S')}] {name}: {step_purpose(current.flow_name, name)} "
          f"(preset {cfg.name!r})", flush=True)
    atexit.register(_print_duration, name, time.monotonic())
    maybe_fail(name)
    return cfg


def step_purpose(flow_name: str, step_name: str) -> str:
    """The first paragraph of the step's docstring ('' when the flow class is not in this process's `__main__`)."""
    flow = getattr(sys.modules.get("__main__"), flow_name, None)
    doc = getattr(getattr(flow, step_name, None), "__doc__", None) or ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def _print_duration(name: str, started: float) -> None:
    seconds = time.monotonic() - started
    took = f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.1f} s"
    print(f"[azllm {time.strftime('%H:%M:%S')}] {name}: ran for {took}", flush=True)


@contextmanager
def save_dir(name: str) -> Iterator[Path]:
    """A scratch directory for files a step saves as a model reference; removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"azllm-{name}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
