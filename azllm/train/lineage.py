"""Bridge between training checkpoints on disk and Metaflow's `@checkpoint` store.

`@checkpoint(load_policy="eager")` hands a step the latest checkpoint of that step
(and foreach value) in the namespace, which can be an unrelated older run: a new run
would then silently start from its end. `restore_checkpoint` accepts a loaded
checkpoint only when it comes from this run or the run it resumes
(`current.run_id`, `current.origin_run_id`) and carries the expected name
(e.g. `cpt_full/extend`). Only flow steps call this module; training code never
knows it runs in a flow.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any


def same_lineage(pathspec: str | None, run_id: str, origin_run_id: str | None) -> bool:
    """Whether a checkpoint written by task `pathspec` (flow/run/step/task) belongs to this run's lineage."""
    if not pathspec:
        return False
    parts = pathspec.split("/")
    ckpt_run = parts[1] if len(parts) > 1 else ""
    return ckpt_run in {str(run_id), str(origin_run_id) if origin_run_id else str(run_id)}


def accept_loaded(info: Any, *, name: str, run_id: str, origin_run_id: str | None) -> tuple[bool, str]:
    """(accepted, why) for a loaded checkpoint `info` (a CheckpointArtifact)."""
    if info is None:
        return False, "no checkpoint was loaded"
    pathspec = getattr(info, "pathspec", None)
    metadata = getattr(info, "metadata", None) or {}
    if metadata.get("azllm_name") != name:
        return False, f"checkpoint is for {metadata.get('azllm_name')!r}, not {name!r}"
    if not same_lineage(pathspec, run_id, origin_run_id):
        return False, f"checkpoint {pathspec} is from another run (this run {run_id}, resumed from {origin_run_id})"
    return True, f"checkpoint {pathspec} of this run lineage"


def restore_checkpoint(name: str, target: Path) -> bool:
    """Copy the checkpoint `@checkpoint` loaded into `target` if it passes the lineage guard."""
    from metaflow import current

    ok, why = accept_loaded(current.checkpoint.info if current.checkpoint.is_loaded else None, name=name,
                            run_id=current.run_id, origin_run_id=current.origin_run_id)
    print(f"[azllm] {name}: {'resuming from' if ok else 'starting fresh:'} {why}", flush=True)
    if ok:
        subdir = (current.checkpoint.info.metadata or {}).get("subdir", "")
        shutil.copytree(current.checkpoint.directory, target / subdir, dirs_exist_ok=True)
    return ok


def checkpoint_saver(name: str) -> Callable[[Path], None]:
    """A callback that registers a checkpoint directory with `@checkpoint` under `name`."""
    from metaflow import current

    def save(path: Path) -> None:
        path = Path(path)
        current.checkpoint.save(str(path), metadata={"azllm_name": name, "subdir": path.name},
                                name=name.replace("/", "_"))
        print(f"[azllm] {name}: registered checkpoint {path.name}", flush=True)

    return save
