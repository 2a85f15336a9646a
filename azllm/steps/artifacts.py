"""How flow steps store and load what they make: metaflow-checkpoint references (`current.model.save`)
of prepared data, CPT phases, TensorBoard logs and trainer checkpoints.

Kept out of the flow file so each step reads as: inputs, one library call, artifacts.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azllm.steps.step import save_dir

if TYPE_CHECKING:
    from azllm.train.phase import PhaseResult


def save_prepared_data(out: Path) -> tuple[dict, dict]:
    """(corpus, data) references of a prepared directory: `train.jsonl` alone (~10 GB at the case
    study's scale, read only by `train_tokenizer` and `pack_arm`), and the small files (validation,
    other_domain, sft_*) the later steps load, so SFT and evaluation never download the training text.
    A step rebuilds them as ``azllm.data.layout.PreparedData(data_dir=..., corpus_dir=...)``."""
    from metaflow import current

    from azllm.data.layout import CORPUS_FILES

    with save_dir("corpus") as corpus_dir:
        for name in CORPUS_FILES:
            shutil.move(out / name, corpus_dir / name)
        corpus = current.model.save(str(corpus_dir), label="corpus", storage_format="files")
    return corpus, current.model.save(str(out), label="data", storage_format="files")


@contextmanager
def live_phase_dir(name: str, *, max_steps: int, title: str) -> Iterator[Path]:
    """`save_dir` for one CPT phase, with the step's live card following its workers' metrics
    (needs `@card(refresh_interval=...)` on the step)."""
    from metaflow import current

    from azllm.steps.cards import live_training_card
    from azllm.train.arms import metrics_path

    with save_dir(name) as out, live_training_card(current.card, metrics_path(out), max_steps=max_steps,
                                                   title=title):
        yield out


def store_phase(result: PhaseResult, label: str) -> tuple[dict, dict, dict | None]:
    """(metrics, model reference, TensorBoard reference or None) of one CPT phase, stored with
    metaflow-checkpoint's `current.model.save` so later steps and notebooks can load them."""
    from metaflow import current

    model_ref = current.model.save(str(result.model_dir), label=label, storage_format="files")
    tb_ref = store_tensorboard(result.tensorboard_dir, f"{label}_tensorboard") if result.tensorboard_dir else None
    return result.metrics, model_ref, tb_ref


def store_tensorboard(logdir: Path, label: str) -> dict | None:
    """A reference to TensorBoard event files under `logdir`, or None when there are none."""
    from metaflow import current

    logdir = Path(logdir)
    if not logdir.is_dir() or not any(logdir.rglob("events.out.tfevents.*")):
        return None
    return current.model.save(str(logdir), label=label, storage_format="files")


def trainer_checkpoints(name: str) -> dict[str, Any]:
    """Resume and registration for a TRL trainer in a step with `@checkpoint(load_policy="eager")`:
    `resume_from_checkpoint` = the checkpoint Metaflow loaded for this run lineage (None on a first
    attempt), `on_checkpoint` = register each `checkpoint-N` the trainer writes with Metaflow, so a
    failed step's retry or `resume` continues from the last one (docs/DESIGN.md §7)."""
    from azllm.train.checkpointing import loaded_checkpoint_for_this_run, register_with_metaflow

    loaded = loaded_checkpoint_for_this_run()
    if loaded is not None:
        print(f"[checkpoint] {name}: resuming the trainer from {loaded}", flush=True)

    def register(path: Path) -> None:
        register_with_metaflow(path, {"trainer": name}, name=name)

    return {"resume_from_checkpoint": str(loaded) if loaded is not None else None, "on_checkpoint": register}


def load_optional(flow: Any, name: str) -> Path | None:
    """The files of reference artifact `name` when an earlier step stored it (e.g. `preference_adapter`,
    absent when `[preference] method = "none"`), else None."""
    from metaflow import current

    ref = getattr(flow, name, None)
    return Path(current.model.load(ref)) if ref is not None else None
