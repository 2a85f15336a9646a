"""Find AzLLMFlow runs and the model parts they produced, through the Metaflow client.

Shared by `azllm chat`, `azllm export` and the notebook:

    >>> from azllm.runs import find_run, latest_production_run, run_parts, fetch_parts
    >>> run = find_run("production")           # or "latest", or a run id
    >>> parts = run_parts(run)                 # refs of the chosen arm's CPT model, tokenizer, adapter
    >>> dirs = fetch_parts(parts)              # downloaded once into the azllm cache

The flow carries `@project(name="azllm")`: every run is tagged `project:azllm` and
`project_branch:<branch>` (`user.<name>` by default, `test.<name>` with `--branch <name>`,
`prod` with `--production`), which is how the production model is found by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLOW_NAME = "AzLLMFlow"
PROJECT = "azllm"
PRODUCTION_BRANCH = "prod"
PART_STEPS = ("end", "evaluate", "preference", "sft_lora", "join_cpt")
"""Steps whose task holds the chosen arm's references, latest first: a run that failed
after `join_cpt` still has its CPT models, and one that failed after `sft_lora` its adapter."""
ADAPTER_STAGES = ("preference", "sft")
"""Adapters a run may hold, latest stage first (`preference` only with `[preference] method` != none)."""


@dataclass
class RunParts:
    """Where a run's model parts are: metaflow-checkpoint references, not files yet."""

    pathspec: str
    """`AzLLMFlow/<run id>`."""
    arm: str
    chosen_arm: str
    model_ref: Any
    tokenizer_ref: Any
    adapter_ref: Any | None
    """None when the run has no SFT adapter (it failed before `sft_lora`, or `arm` is not the chosen one)."""
    data: Any
    """The artifacts of the latest finished step (`task.data`): the facts for a model card."""
    step: str
    """The step `data` comes from (`end` for a finished run)."""
    preference_adapter_ref: Any | None = None
    """The preference stage's adapter; None with `[preference] method = "none"` or before `preference` finished."""
    adapter_stage: str = "sft"
    """Which stage `adapter_ref` is (`with_stage` swaps in the preference adapter)."""


@dataclass
class PartDirs:
    model: Path
    tokenizer: Path
    adapter: Path | None


def runs_in_branch(branch: str, *, successful: bool = False) -> list[Any]:
    """Runs of the project's `branch` (e.g. `prod`, `test.ci`, `user.alice`), newest first."""
    from metaflow import Flow, namespace

    namespace(None)
    runs = Flow(FLOW_NAME).runs(f"project:{PROJECT}", f"project_branch:{branch}")
    return [r for r in runs if r.successful or not successful]


def latest_production_run():
    """The latest successful run in the production branch (`python flows/azllm_flow.py --production run`)."""
    runs = runs_in_branch(PRODUCTION_BRANCH, successful=True)
    if not runs:
        raise ValueError(f"no successful {FLOW_NAME} run in the production branch (tags project:{PROJECT}, "
                         f"project_branch:{PRODUCTION_BRANCH}); make one with "
                         "`python flows/azllm_flow.py --production run`")
    return runs[0]


def branch_of(run: Any) -> str | None:
    """The project branch a run lives in (from its `project_branch:` tag), or None before @project."""
    return next((t.split(":", 1)[1] for t in run.system_tags if t.startswith("project_branch:")), None)


def find_run(run_id: str = "latest"):
    """`latest` (latest successful run), `production` (see above) or a run id -> a `metaflow.Run`."""
    from metaflow import Flow, Run, namespace
    from metaflow.exception import MetaflowNotFound

    namespace(None)
    if run_id == "production":
        return latest_production_run()
    if run_id == "latest":
        try:
            run = Flow(FLOW_NAME).latest_successful_run
        except MetaflowNotFound:
            run = None
        if run is None:
            raise ValueError(f"no successful {FLOW_NAME} run in this datastore; run `make demo` first")
        return run
    try:
        return Run(f"{FLOW_NAME}/{run_id}")
    except MetaflowNotFound:
        raise ValueError(f"no {FLOW_NAME} run {run_id!r} in this datastore ({_datastore_where()}); pass a run id "
                         "it holds (the flow prints it: 'Workflow starting (run-id ...)'; "
                         "`azllm.inspect.list_runs()` lists them), 'latest' or 'production'") from None


def _datastore_where() -> str:
    from metaflow.metaflow_config import DATASTORE_SYSROOT_LOCAL, DEFAULT_DATASTORE

    return f"{DEFAULT_DATASTORE}: {DATASTORE_SYSROOT_LOCAL}" if DEFAULT_DATASTORE == "local" else DEFAULT_DATASTORE


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
    data = task.data
    chosen = data.chosen_arm
    arm = arm or chosen
    if arm not in data.cpt_models:
        raise ValueError(f"run {run.pathspec} has no arm {arm!r}; its arms are {sorted(data.cpt_models)}")
    adapter = data.sft_adapter if arm == chosen and "sft_adapter" in data else None
    preference = data.preference_adapter if arm == chosen and "preference_adapter" in data else None
    return RunParts(pathspec=run.pathspec, arm=arm, chosen_arm=chosen, model_ref=data.cpt_models[arm],
                    tokenizer_ref=data.tokenizers[arm], adapter_ref=adapter, data=data, step=step,
                    preference_adapter_ref=preference)


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
    names = {"model": parts.model_ref, "tokenizer": parts.tokenizer_ref, "adapter": parts.adapter_ref}
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
    return PartDirs(model=dirs["model"], tokenizer=dirs["tokenizer"], adapter=dirs["adapter"])


def run_config(run: Any) -> dict[str, Any]:
    """The resolved preset a run used (its `config` Config, as a plain dict)."""
    return dict(run["_parameters"].task.data.config)


def tag_run(pathspec: str, tags: list[str]) -> None:
    """Add user tags to a run (also from inside its own `end` step): `Flow("AzLLMFlow").runs(tag)` finds it."""
    from metaflow import Run, namespace

    namespace(None)
    Run(pathspec).add_tags(tags)
