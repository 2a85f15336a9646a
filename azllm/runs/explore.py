"""Read finished (or running) AzLLMFlow runs through the Metaflow client: tables and figures.

Used by `notebooks/inspect_runs.ipynb`; every function takes a `metaflow.Run` (or a run id)
and returns a pandas DataFrame or a matplotlib figure, so they also work in a plain shell.
The tables and figures are `azllm.report.tables` and `azllm.report.plots`, the same ones the cards
show, fed the run's :class:`azllm.report.summary.RunSummary`:

    >>> from azllm.runs import explore as azi
    >>> run = azi.find_run()                   # $AZLLM_RUN_ID, else the latest successful run
    >>> azi.bpb_table(run)                     # bits per byte, model x evaluation file
    >>> azi.plot_loss_curves(run).savefig("loss.png")
    >>> azi.fetch_tensorboard(run, "tb")       # then: tensorboard --logdir tb

Uses the datastore and metadata Metaflow is configured with (METAFLOW_DATASTORE_SYSROOT_LOCAL
for a local datastore), in the global namespace so runs of every user are visible.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from azllm.report import plots
from azllm.report.summary import RunSummary
from azllm.report.tables import (
    corpus_rows,
    generations_side_by_side,
    history_frame,
    metrics_rows,
    sft_rows,
    task_score_table,
    throughput_rows,
)
from azllm.runs.find import FLOW_NAME, find_run, run_config

TENSORBOARD_ARTIFACTS = {"cpt_embeddings": "embeddings_tensorboard", "cpt_full": "full_tensorboard",
                         "sft_lora": "sft_tensorboard", "preference": "preference_tensorboard"}
"""Step -> artifact holding the model reference of that phase's TensorBoard event files."""


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------


def list_runs(flow: str = FLOW_NAME, limit: int = 20) -> pd.DataFrame:
    """The most recent runs, newest first: id, preset, status, start time, duration (min), user."""
    from metaflow import Flow, namespace

    namespace(None)
    rows = []
    for i, run in enumerate(Flow(flow).runs()):
        if i >= limit:
            break
        finished = run.finished_at
        rows.append({"run_id": run.id, "preset": _preset_of(run), "successful": run.successful,
                     "finished": run.finished, "created_at": run.created_at, "minutes":
                     (finished - run.created_at).total_seconds() / 60 if finished else None,
                     "user": next((t[5:] for t in run.system_tags if t.startswith("user:")), None)})
    return pd.DataFrame(rows)


def other_run(run: Any, flow: str = FLOW_NAME):
    """$AZLLM_COMPARE_RUN_ID, else the latest successful run other than `run`, else `run` itself."""
    from metaflow import Flow, namespace

    run = _as_run(run)
    if os.environ.get("AZLLM_COMPARE_RUN_ID"):
        return find_run(os.environ["AZLLM_COMPARE_RUN_ID"])
    namespace(None)
    for candidate in Flow(flow).runs():
        if candidate.id != run.id and candidate.successful:
            return candidate
    return run


def _as_run(run: Any):
    return find_run(run) if isinstance(run, str) or run is None else run


def _end_data(run: Any) -> RunSummary:
    """The run's summary, as its `end` step stored it."""
    run = _as_run(run)
    return RunSummary.from_artifacts(run["end"].task.data, config=run_config(run))


def _preset_of(run: Any) -> str | None:
    try:
        return run_config(run).get("name")
    except Exception:  # noqa: BLE001 - a run that failed before start has no config
        return None


def config_table(run: Any) -> pd.DataFrame:
    """The config flattened to `section.key -> value` rows (easy to read and to diff)."""
    flat = pd.json_normalize(run_config(_as_run(run)), sep=".").T
    flat.columns = ["value"]
    flat.index.name = "key"
    return flat.reset_index()


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


def data_stats_table(run: Any) -> pd.DataFrame:
    """Corpus splits (documents, MB, words, chars) after cleaning and dedup."""
    return pd.DataFrame(corpus_rows(_end_data(run).data_stats))


def sft_stats_table(run: Any) -> pd.DataFrame:
    """Chat-record splits used for SFT."""
    return pd.DataFrame(sft_rows(_end_data(run).data_stats))


def fertility_table(run: Any) -> pd.DataFrame:
    """Fertility (tokens per word) and friends, one row per (tokenizer, evaluation file)."""
    return pd.DataFrame(_end_data(run).fertility)


def bpb_table(run: Any) -> pd.DataFrame:
    """Bits per byte of the base model and every CPT arm (rows) per evaluation file (columns)."""
    df = pd.DataFrame(_end_data(run).arm_bpb).T
    df.index.name = "model"
    return df


def chosen_arm(run: Any) -> str:
    return _end_data(run).chosen_arm


def loss_history(run: Any) -> pd.DataFrame:
    """Every logged CPT step: arm, phase, step, global_step, loss, lr, tokens_per_s, peak_mem_gib, mfu..."""
    return history_frame(_end_data(run).cpt_metrics)


def throughput_table(run: Any) -> pd.DataFrame:
    """Per arm and phase: steps, tokens, first/final loss, tokens/s, peak memory, MFU."""
    return pd.DataFrame(throughput_rows(_end_data(run).cpt_metrics))


def eval_table(run: Any) -> pd.DataFrame:
    """Final evaluation, one row per model (base, cpt, sft): BPB per file, repetition, chrF, assistant loss."""
    return pd.DataFrame(metrics_rows(_end_data(run).metrics)).set_index("model")


def task_scores_table(run: Any) -> pd.DataFrame:
    """`[eval] tasks` (lm-evaluation-harness): each task's primary metric for base and every arm
    (`join_cpt`) and for CPT, SFT and preference (`evaluate`); empty for a run without tasks."""
    data = _end_data(run)
    frames = [task_score_table(rows).assign(step=step) for step, rows in
              (("join_cpt", data.arm_task_scores), ("evaluate", data.task_scores))
              if rows]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def generations_table(run: Any) -> pd.DataFrame:
    """Greedy generations: one row per prompt, one column per model."""
    return generations_side_by_side(_end_data(run).generations)


def plot_loss_curves(run: Any):
    """CPT loss / LR / throughput / memory per arm (dashed: phase 1) from the stored metrics."""
    return plots.plot_cpt_curves(_end_data(run).cpt_metrics)


def plot_bpb_chart(run: Any):
    return plots.plot_bpb(_end_data(run).arm_bpb)


def plot_fertility_chart(run: Any):
    return plots.plot_fertility(_end_data(run).fertility)


def plot_sft_curve(run: Any):
    return plots.plot_sft_loss(_end_data(run).sft_metrics)


def plot_overview(run: Any):
    """The notebook's main figure: CPT loss per arm, bits per byte, fertility, SFT loss in one 2x2 grid."""
    run = _as_run(run)
    data = _end_data(run)
    return plots.plot_overview(cpt_metrics=data.cpt_metrics, arm_bpb=data.arm_bpb, fertility=data.fertility,
                               sft_metrics=data.sft_metrics, chosen_arm=data.chosen_arm,
                               title=f"{FLOW_NAME}/{run.id}  preset {_preset_of(run)!r}")


# ---------------------------------------------------------------------------
# Two runs
# ---------------------------------------------------------------------------


def compare_runs(run_a: Any, run_b: Any) -> pd.DataFrame:
    """Headline numbers of two runs side by side, with the difference b - a where numeric."""
    a, b = _as_run(run_a), _as_run(run_b)
    col_a, col_b = f"a: {a.id}", f"b: {b.id}"
    df = pd.DataFrame({col_a: pd.Series(_headline_numbers(a), dtype=object),
                       col_b: pd.Series(_headline_numbers(b), dtype=object)})
    df["b - a"] = [(vb - va) if isinstance(va, int | float) and isinstance(vb, int | float)
                   and not isinstance(va, bool) else None for va, vb in zip(df[col_a], df[col_b], strict=True)]
    df.index.name = "measure"
    return df


def config_diff(run_a: Any, run_b: Any) -> pd.DataFrame:
    """Config keys whose values differ between two runs."""
    a, b = _as_run(run_a), _as_run(run_b)
    col_a, col_b = f"a: {a.id}", f"b: {b.id}"
    both = pd.DataFrame({col_a: config_table(a).set_index("key")["value"],
                         col_b: config_table(b).set_index("key")["value"]})
    return both[[str(x) != str(y) for x, y in zip(both[col_a], both[col_b], strict=True)]]


def _headline_numbers(run) -> dict[str, Any]:
    data = _end_data(run)
    out: dict[str, Any] = {"preset": _preset_of(run), "chosen_arm": data.chosen_arm,
                           "train documents": data.data_stats["corpus"].get("train", {}).get("documents")}
    for row in data.fertility:
        out[f"fertility {row['tokenizer']} / {row['data']}"] = row["fertility"]
    for model, scores in data.arm_bpb.items():
        for f, v in scores.items():
            out[f"bpb {model} / {f}"] = v
    for arm, phases in data.cpt_metrics.items():
        for phase, m in phases.items():
            if m and not m.get("skipped"):
                out[f"final loss {arm} {phase}"] = m.get("final_loss")
                out[f"tokens/s {arm} {phase}"] = m.get("tokens_per_s")
    for row in (data.task_scores or []):
        if row.get("primary"):
            out[f"task {row['task']} {row['metric']} / {row['model']}"] = row["value"]
    sft = data.sft_metrics or {}
    out["assistant loss before SFT"] = sft.get("eval_assistant_loss_before")
    out["assistant loss after SFT"] = sft.get("eval_assistant_loss_after")
    return out


# ---------------------------------------------------------------------------
# TensorBoard
# ---------------------------------------------------------------------------


def fetch_tensorboard(run: Any, dest: str | Path) -> Path:
    """Download the TensorBoard event files of every training phase of `run` into `dest`.

    One sub-directory per phase (`extend_full/`, `baseline_embeddings/`, `sft/`), so
    `tensorboard --logdir DEST` shows them as separate runs. Phases without event files
    (the baseline arm's pass-through phase 1, or runs made before they were saved) are skipped.
    """
    from metaflow import load_model

    run, dest = _as_run(run), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for step_name, name in TENSORBOARD_ARTIFACTS.items():
        try:
            tasks = list(run[step_name])
        except KeyError:
            continue
        for task in tasks:
            ref = task[name].data if name in task else None
            if not ref:
                continue
            arm = task["arm"].data if "arm" in task else None
            phase = step_name.removeprefix("cpt_").removesuffix("_lora")
            load_model(ref, str(dest / (f"{arm}_{phase}" if arm and phase != "sft" else phase)))
    return dest
