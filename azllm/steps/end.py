"""The `end` step: export the chosen arm as a model reference, tag the run, print where results are.

Everything here takes the run's :class:`azllm.report.summary.RunSummary`, built once in the step.
"""

from __future__ import annotations

from pathlib import Path

from azllm.export.model_dir import PartDirs, write_export
from azllm.report.model_card import model_card
from azllm.report.summary import RunSummary
from azllm.steps.step import save_dir


def export_run_model(summary: RunSummary, dtype: str = "bfloat16") -> dict:
    """The chosen arm with its last adapter merged (the preference stage's when it ran, else SFT's), stored as
    a `@model` reference (`export_model`); the run is tagged `azllm.model:<arm>` and `azllm.bpb:<validation BPB>`."""
    from metaflow import current

    arm = summary.chosen_arm
    adapter = summary.preference_adapter if summary.preference_adapter is not None else summary.sft_adapter
    dirs = PartDirs(model=Path(current.model.load(summary.cpt_models[arm])), adapter=Path(current.model.load(adapter)))
    card = model_card(summary, pathspec=f"{current.flow_name}/{current.run_id}", arm=arm, stage=summary.stage,
                      dtype=dtype, branch=current.branch_name)
    with save_dir("export") as tmp:
        out = write_export(dirs, tmp / "model", dtype=dtype, card=card)
        ref = current.model.save(str(out), label="export", storage_format="files")
    tag_run(f"{current.flow_name}/{current.run_id}", summary.tags())
    return ref


def tag_run(pathspec: str, tags: list[str]) -> None:
    """Add user tags to a run (also from inside its own `end` step): `Flow("AzLLMFlow").runs(tag)` finds it."""
    from metaflow import Run, namespace

    namespace(None)
    Run(pathspec).add_tags(tags)


def print_summary(summary: RunSummary) -> None:
    """The closing lines of a run: the headline figures and how to look at everything."""
    from metaflow import current

    run = f"{current.flow_name}/{current.run_id}"
    lines = [f"[azllm] run {run} finished. Chosen arm: {summary.chosen_arm}."]
    for name, by_file in (summary.arm_bpb or {}).items():
        lines.append(f"  BPB {name:>10}: " + ", ".join(f"{f}={v:.4f}" for f, v in by_file.items()))
    lines += [
        "Look at the results:",
        f"  python flows/azllm_flow.py card view end --run-id {current.run_id}    (summary card)",
        "  python flows/azllm_flow.py card server                          (all cards, live)",
        "  jupyter notebook notebooks/inspect_runs.ipynb                   (Metaflow client)",
        f"  azllm chat --run {current.run_id}                               (talk to the assistant)",
    ]
    print("\n".join(lines), flush=True)
