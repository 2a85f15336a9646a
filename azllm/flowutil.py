"""Small helpers every flow step uses: config, a one-line banner, scratch dirs, the summary.

Kept out of the flow file so each step reads as: inputs, one library call, artifacts.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azllm.config import ModelConfig, PipelineConfig, load_pipeline_config
from azllm.faults import maybe_fail

if TYPE_CHECKING:
    from azllm.train.phase import PhaseResult

STEP_PURPOSE = {
    "start": "validating the preset, recording versions and hardware",
    "plan_data": "filtering the evaluation text, cutting the corpus into shards and groups",
    "prepare_shards": "filtering and MinHashing one group of corpus shards",
    "join_data": "deduplicating across groups, mixing and splitting the corpus; chat records",
    "train_tokenizer": "training the byte-level BPE and measuring fertility",
    "pack_arm": "tokenizing and packing one CPT arm's corpus on CPU",
    "cpt_embeddings": "phase 1: adapting the vocabulary and training the embeddings",
    "join_embeddings": "gathering phase 1's nodes",
    "start_full": "starting phase 2 of one arm",
    "cpt_full": "phase 2: training all parameters",
    "join_full": "gathering phase 2's nodes",
    "join_cpt": "scoring bits per byte of every arm, choosing one",
    "sft_lora": "LoRA SFT into a chat assistant",
    "preference": "the optional preference stage (DPO or GRPO) on the SFT adapter",
    "evaluate": "base vs CPT vs SFT (vs preference): BPB, generations, chrF",
    "end": "summarising the run",
}


def begin_step(name: str, config: Any) -> PipelineConfig:
    """Print what the step does, honour failure injection, return the typed config.

    Each task runs in its own process, so the line with the step's duration is printed when
    that process exits (after Metaflow has stored the artifacts), without a wrapper in the flow.
    """
    cfg = load_pipeline_config(config)
    print(f"[azllm {time.strftime('%H:%M:%S')}] {name}: {STEP_PURPOSE.get(name, '')} "
          f"(preset {cfg.name!r})", flush=True)
    atexit.register(_print_duration, name, time.monotonic())
    maybe_fail(name)
    return cfg


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

    from azllm.cards import live_training_card
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


def base_tokenizer_name(model_cfg: ModelConfig) -> str:
    """The base model's tokenizer: explicit, or the model's own."""
    return model_cfg.tokenizer or model_cfg.name


def print_summary(flow: Any) -> None:
    """The closing lines of a run: the headline figures and how to look at everything."""
    from metaflow import current

    run = f"{current.flow_name}/{current.run_id}"
    lines = [f"[azllm] run {run} finished. Chosen arm: {flow.chosen_arm}."]
    bpb = flow.arm_bpb
    for name, by_file in bpb.items():
        lines.append(f"  BPB {name:>10}: " + ", ".join(f"{f}={v:.4f}" for f, v in by_file.items()))
    lines += [
        "Look at the results:",
        f"  python flows/azllm_flow.py card view end --run-id {current.run_id}    (summary card)",
        "  python flows/azllm_flow.py card server                          (all cards, live)",
        "  jupyter notebook notebooks/inspect_runs.ipynb                   (Metaflow client)",
        f"  azllm chat --run {current.run_id}                               (talk to the assistant)",
    ]
    print("\n".join(lines), flush=True)
