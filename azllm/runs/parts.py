"""A run's model parts: the metaflow-checkpoint references of an arm's CPT model (a self-contained HF
directory, tokenizer included) and adapters, and their download into the azllm cache (`azllm chat`, `azllm export`).

    >>> from azllm.runs.find import find_run
    >>> from azllm.runs.parts import fetch_parts, run_parts
    >>> parts = run_parts(find_run("production"))   # refs of the chosen arm's CPT model and adapter
    >>> dirs = fetch_parts(parts)                     # downloaded once into the azllm cache
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azllm.export.model_dir import PartDirs
from azllm.report.summary import RunSummary
from azllm.runs.find import run_config

PART_STEPS = ("end", "evaluate", "preference", "sft_lora", "join_cpt")
"""Steps whose task holds the chosen arm's references, latest first: a run that failed
after `join_cpt` still has its CPT models, and one that failed after `sft_lora` its adapter."""


@dataclass
class RunParts:
    """Where a run's model parts are: metaflow-checkpoint references, not files yet."""

    pathspec: str
    """`AzLLMFlow/<run id>`."""
    arm: str
    chosen_arm: str
    model_ref: Any
    adapter_ref: Any | None
    """None when the run has no SFT adapter (it failed before `sft_lora`, or `arm` is not the chosen one)."""
    summary: RunSummary
    """What the latest finished step knows of the run (`task.data`): the facts for a model card."""
    step: str
    """The step `data` comes from (`end` for a finished run)."""
    preference_adapter_ref: Any | None = None
    """The preference stage's adapter; None with `[preference] method = "none"` or before `preference` finished."""
    adapter_stage: str = "sft"
    """Which stage `adapter_ref` is (`with_stage` swaps in the preference adapter)."""


def _latest_finished_task(run: Any) -> tuple[str, Any]:
    """(step, task) of the latest step in PART_STEPS that finished successfully."""
    from metaflow.exception import MetaflowNotFound

    for step in PART_STEPS:
        try:
            task = run[step].task
        except (KeyError, MetaflowNotFound):
            continue
        if task is not None and task.successful:
            return step, task
    raise ValueError(f"run {run.pathspec} has no CPT model: it stopped before join_cpt; finish it with "
                     f"`python flows/azllm_flow.py resume --origin-run-id {run.id}`")


def run_parts(run: Any, arm: str | None = None) -> RunParts:
    """The references of `arm` (default: the run's chosen arm) in a finished or failed run."""
    step, task = _latest_finished_task(run)
    summary = RunSummary.from_artifacts(task.data, config=run_config(run))
    chosen = summary.chosen_arm
    arm = arm or chosen
    if arm not in summary.cpt_models:
        raise ValueError(f"run {run.pathspec} has no arm {arm!r}; its arms are {sorted(summary.cpt_models)}")
    return RunParts(pathspec=run.pathspec, arm=arm, chosen_arm=chosen, model_ref=summary.cpt_models[arm],
                    adapter_ref=summary.sft_adapter if arm == chosen else None, summary=summary, step=step,
                    preference_adapter_ref=summary.preference_adapter if arm == chosen else None)


def latest_stage(parts: RunParts) -> str:
    """The last stage the run's arm has: `preference`, `sft` or `cpt`."""
    if parts.preference_adapter_ref is not None:
        return "preference"
    return "sft" if parts.adapter_ref is not None else "cpt"


def with_stage(parts: RunParts, stage: str) -> RunParts:
    """`parts` whose adapter is that of `stage` (`preference`, `sft`; `cpt`: no adapter)."""
    from dataclasses import replace

    if stage == "preference":
        return replace(parts, adapter_ref=parts.preference_adapter_ref, adapter_stage="preference")
    return replace(parts, adapter_ref=None) if stage == "cpt" else parts


def fetch_parts(parts: RunParts, cache_root: Path | None = None) -> PartDirs:
    """Download the parts with `metaflow.load_model` into `<cache>/runs/<run id>/` (once per run and arm)."""
    from metaflow import load_model

    from azllm.config import cache_dir

    root = (cache_root or cache_dir() / "runs") / parts.pathspec.split("/")[-1]
    names = {"model": parts.model_ref, "adapter": parts.adapter_ref}
    dirs: dict[str, Path | None] = {}
    for name, ref in names.items():
        if ref is None:
            dirs[name] = None
            continue
        stem = f"{name}-{parts.adapter_stage}" if name == "adapter" and parts.adapter_stage != "sft" else name
        target = root / (stem if parts.arm == parts.chosen_arm else f"{stem}-{parts.arm}")
        if not (target / ".complete").exists():
            load_model(ref, str(target))
            (target / ".complete").touch()
        dirs[name] = target
    return PartDirs(model=dirs["model"], adapter=dirs["adapter"])


