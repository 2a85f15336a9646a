"""Find AzLLMFlow runs through the Metaflow client: the one way `azllm chat`, `azllm export` and the
notebook name a run.

    >>> from azllm.runs.find import find_run
    >>> run = find_run()                       # $AZLLM_RUN_ID, else the latest successful run
    >>> run = find_run("production")           # or "latest", or a run id

The flow carries `@project(name="azllm")`: every run is tagged `project:azllm` and
`project_branch:<branch>` (`user.<name>` by default, `test.<name>` with `--branch <name>`,
`prod` with `--production`), which is how the production model is found by name.
"""

from __future__ import annotations

import os
from typing import Any

FLOW_NAME = "AzLLMFlow"
PROJECT = "azllm"
PRODUCTION_BRANCH = "prod"
RUN_ID_ENV = "AZLLM_RUN_ID"
"""The run `find_run()` takes when given none (the notebook's way to point at a run)."""


class RunNotFound(ValueError):
    """No run answers the name; the message says which names exist and how to make one."""


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
        raise RunNotFound(f"no successful {FLOW_NAME} run in the production branch (tags project:{PROJECT}, "
                         f"project_branch:{PRODUCTION_BRANCH}); make one with "
                         "`python flows/azllm_flow.py --production run`")
    return runs[0]


def branch_of(run: Any) -> str | None:
    """The project branch a run lives in (from its `project_branch:` tag), or None before @project."""
    return next((t.split(":", 1)[1] for t in run.system_tags if t.startswith("project_branch:")), None)


def find_run(run_id: str | None = None):
    """`latest` (latest successful run), `production` (see above) or a run id -> a `metaflow.Run`;
    None: $AZLLM_RUN_ID, else `latest`. Raises :class:`RunNotFound` with what to do instead."""
    from metaflow import Flow, Run, namespace
    from metaflow.exception import MetaflowNotFound

    namespace(None)
    run_id = run_id or os.environ.get(RUN_ID_ENV) or "latest"
    if run_id == "production":
        return latest_production_run()
    if run_id == "latest":
        try:
            run = Flow(FLOW_NAME).latest_successful_run
        except MetaflowNotFound:
            run = None
        if run is None:
            raise RunNotFound(f"no successful {FLOW_NAME} run in this datastore ({_datastore_where()}); "
                              "run `make demo` (or `python flows/azllm_flow.py run`) first")
        return run
    try:
        return Run(f"{FLOW_NAME}/{run_id}")
    except MetaflowNotFound:
        raise RunNotFound(f"no {FLOW_NAME} run {run_id!r} in this datastore ({_datastore_where()}); pass a run id "
                         "it holds (the flow prints it: 'Workflow starting (run-id ...)'; "
                         "`azllm.runs.explore.list_runs()` lists them), 'latest' or 'production'") from None


def _datastore_where() -> str:
    from metaflow.metaflow_config import DATASTORE_SYSROOT_LOCAL, DEFAULT_DATASTORE

    return f"{DEFAULT_DATASTORE}: {DATASTORE_SYSROOT_LOCAL}" if DEFAULT_DATASTORE == "local" else DEFAULT_DATASTORE


def run_config(run: Any) -> dict[str, Any]:
    """The resolved preset a run used (its `config` Config, as a plain dict)."""
    return dict(run["_parameters"].task.data.config)
