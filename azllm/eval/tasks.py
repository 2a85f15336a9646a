"""Task evaluation with lm-evaluation-harness: the model azllm loaded, wrapped in lm-eval's HF class.

The model (its own tokenizer, placed by azllm.model.device) is wrapped in
`lm_eval.models.huggingface.HFLM` and scored with `lm_eval.simple_evaluate`, the function behind
`lm_eval --model hf`, so a task gives the same number here as on lm-eval's command line for the
same directory (tests/test_tasks.py checks it). Tasks come from three places:

- lm-eval's own (`belebele_azj_Latn`, `include_base_44_azerbaijani`, `global_piqa_*_azj_latn` ...);
- azllm's shipped YAML in azllm/eval/lm_tasks (`sib200_azj`, `flores_azj_eng`, `flores_eng_azj`);
- a user's JSONL named in `[[eval.custom_tasks]]` (azllm.eval.custom), built as inline lm-eval configs.

`[eval.task_data]` points a task at local files (an override of its dataset, see `task_specs`).

    >>> scores = evaluate_tasks(model, tokenizer, cfg.eval, model_name="base")
    >>> scores.rows[0]   # {"model", "task", "metric", "value", "stderr", "n", "chance", "primary", ...}
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azllm.config import EvalConfig, resolve_path
from azllm.config.tasks import (
    SHIPPED_TASKS_DIR,
    check_task_names,
    lm_eval_tasks_dir,
    local_task_data,
    yaml_task_names,
)
from azllm.model.device import Placement

logger = logging.getLogger(__name__)

SCORE_COLUMNS = ("model", "task", "metric", "value", "stderr", "n", "chance", "num_fewshot", "primary",
                 "chat_template")


@dataclass
class TaskScores:
    rows: list[dict[str, Any]]
    """One row per (task, metric): SCORE_COLUMNS."""
    results: list[dict[str, Any]] = field(default_factory=list)
    """lm-eval's results dicts (one per few-shot setting), per-sample logs removed."""
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """lm-eval's per-document logs by task (prompt, responses, target), with `keep_samples`."""


def _local_overrides(name: str, path: str) -> dict[str, Any]:
    """The config keys that point task `name` at local files."""
    shipped = yaml_task_names(str(SHIPPED_TASKS_DIR))
    if name in shipped:
        import yaml

        raw = yaml.safe_load(_strip_tags(Path(shipped[name]).read_text(encoding="utf-8")))
        return {"dataset_kwargs": {**(raw.get("dataset_kwargs") or {}), "data_dir": path}}
    suffix = Path(path).suffix.lower().lstrip(".")
    builder = {"jsonl": "json", "json": "json", "parquet": "parquet", "csv": "csv"}.get(suffix, "json")
    return {"dataset_path": builder, "dataset_name": None,
            "dataset_kwargs": {"data_files": {split: path for split in ("train", "validation", "test")}}}


def _strip_tags(text: str) -> str:
    return text.replace("!function ", "")


def task_specs(cfg: EvalConfig, names: tuple[str, ...] | None = None, manager=None) -> dict[int, list[Any]]:
    """lm-eval task specs for `names` (default `cfg.tasks`), grouped by number of few-shot examples:
    names, inline configs (custom tasks) and, for `[eval.task_data]`, the task or group built by
    lm-eval's TaskFactory with its dataset overridden (the registered YAML merged with the override,
    as lm-eval does for a group member given with overrides; a group passes it to every member)."""
    from azllm.eval.custom import custom_task_config

    names = cfg.tasks if names is None else names
    custom = {t.name: t for t in cfg.custom_tasks}
    local = local_task_data(cfg)
    by_shots: dict[int, list[Any]] = defaultdict(list)
    for name in names:
        if name in custom:
            task = custom[name]
            shots = cfg.num_fewshot if task.num_fewshot < 0 else task.num_fewshot
            by_shots[shots].append(custom_task_config(task, max_gen_toks=cfg.max_new_tokens))
        elif name in local:
            if manager is None:
                raise ValueError(f"{name}: local task data needs the TaskManager (task_manager(...))")
            overrides = _local_overrides(name, resolve_path(local[name]))
            by_shots[cfg.num_fewshot].append(
                manager._factory.build(manager.task_index[name], overrides=overrides, registry=manager.task_index))
        else:
            by_shots[cfg.num_fewshot].append(name)
    return dict(by_shots)


def task_manager(names: tuple[str, ...]):
    """lm-eval's TaskManager over azllm's shipped tasks and only the lm-eval folders `names` live in
    (indexing all of lm-eval's 14,000 YAML files takes ~13 s on 2 cores)."""
    from lm_eval.tasks import TaskManager

    lm = yaml_task_names(str(lm_eval_tasks_dir())) if lm_eval_tasks_dir() else {}
    shipped = yaml_task_names(str(SHIPPED_TASKS_DIR))
    dirs, everything = {str(SHIPPED_TASKS_DIR)}, False
    for n in names:
        if n in shipped:
            continue
        if n in lm:
            dirs.add(str(Path(lm[n]).parent))
        else:
            everything = True  # a name only lm-eval's own index knows
    return TaskManager(include_path=sorted(dirs), include_defaults=everything)


def _chance(samples: list[dict]) -> float | None:
    """Mean of 1 / number of choices over a multiple-choice task's scored documents."""
    counts = [len(s["arguments"]) for s in samples if s.get("arguments")]
    if not samples or "acc" not in samples[0]:
        return None
    return sum(1 / k for k in counts) / len(counts) if counts else None


def score_rows(results: dict[str, Any], *, model_name: str, num_fewshot: int,
               chat_template: bool = False) -> list[dict[str, Any]]:
    """Rows (SCORE_COLUMNS) from one `simple_evaluate` result; groups get the size-weighted chance of
    their members."""
    samples = results.get("samples") or {}
    chance = {t: _chance(s) for t, s in samples.items()}
    n = {t: v["effective"] for t, v in (results.get("n-samples") or {}).items()}
    subtasks = results.get("group_subtasks") or {}

    def leaves(name: str) -> list[str]:
        return [x for c in subtasks.get(name, []) for x in (leaves(c) if c in subtasks else [c])]

    for group in subtasks:
        members = [c for c in leaves(group) if c in n]
        n.setdefault(group, sum(n[c] for c in members))
        known = [c for c in members if chance.get(c) is not None]
        if known and len(known) == len(members):
            chance[group] = sum(chance[c] * n[c] for c in known) / max(1, sum(n[c] for c in known))
    rows = []
    for task, metrics in results["results"].items():
        config = (results.get("configs") or {}).get(task) or {}
        metric_list = [m["metric"] for m in config.get("metric_list", []) if isinstance(m.get("metric"), str)]
        names = [k for k in metrics if "," in k and "_stderr," not in k]
        primary = next((k for m in metric_list for k in names if k.split(",")[0] == m), names[0] if names else None)
        for key in names:
            metric, _, filt = key.partition(",")
            value = metrics[key]
            stderr = metrics.get(f"{metric}_stderr,{filt}")
            if not isinstance(value, (int, float)):
                continue
            rows.append({"model": model_name, "task": task, "metric": metric, "value": float(value),
                         "stderr": float(stderr) if isinstance(stderr, (int, float)) and math.isfinite(stderr)
                         else None,
                         "n": n.get(task), "chance": chance.get(task) if metric.startswith("acc") else
                         (0.0 if metric.startswith("chrf") else None),
                         "num_fewshot": num_fewshot, "primary": key == primary, "chat_template": chat_template})
    return rows


def make_lm(model, tokenizer, *, batch_size: int):
    """lm-eval's HF model class around a model azllm already loaded (weights stay where they are)."""
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


def evaluate_tasks(model, tokenizer, cfg: EvalConfig, *, model_name: str, names: tuple[str, ...] | None = None,
                   keep_samples: bool = False, chat_template: bool = False) -> TaskScores:
    """Score one loaded model on `names` (default `cfg.tasks`), `cfg.limit` documents each; with
    `chat_template`, each prompt is rendered through the tokenizer's chat template (lm-eval's
    `apply_chat_template`), as a chat assistant is used."""
    import lm_eval

    names = cfg.tasks if names is None else names
    if not names:
        return TaskScores(rows=[])
    check_task_names(names, tuple(t.name for t in cfg.custom_tasks))
    manager = task_manager(tuple(n for n in names if n not in {t.name for t in cfg.custom_tasks}))
    lm = make_lm(model, tokenizer, batch_size=cfg.batch_size)
    rows, results, samples = [], [], {}
    for shots, specs in sorted(task_specs(cfg, names, manager).items()):
        out = lm_eval.simple_evaluate(model=lm, tasks=specs, num_fewshot=shots, limit=cfg.limit,
                                      task_manager=manager, log_samples=True, apply_chat_template=chat_template)
        rows += score_rows(out, model_name=model_name, num_fewshot=shots, chat_template=chat_template)
        if keep_samples:
            samples.update(out["samples"])
        out.pop("samples", None)
        results.append(out)
    for r in rows:
        logger.info("task %s %s %s: %.4f", model_name, r["task"], r["metric"], r["value"])
    return TaskScores(rows=rows, results=results, samples=samples)


def generation_tasks(results: list[dict[str, Any]], names: tuple[str, ...]) -> tuple[str, ...]:
    """The names among `names` that lm-eval ran as generation (`output_type: generate_until`)."""
    kinds = {task: (config or {}).get("output_type") for out in results
             for task, config in (out.get("configs") or {}).items()}
    return tuple(n for n in names if kinds.get(n) == "generate_until")


def evaluate_task_models(cfg: EvalConfig, models: dict[str, Any], *, placement: Placement | None = None,
                         out_dir: Path | None = None) -> TaskScores:
    """Every model of `models` ({name: ModelSpec}, azllm.eval.report) on `cfg.tasks`, one loaded at a
    time; an adapter is merged into its model first (lm-eval's HF class takes a plain causal LM). A chat
    model (`spec.chat`) is scored without its chat template on every task and, on the generation tasks,
    also with it (model `"<name> (chat template)"`, `chat_template` column True).
    Writes `task_results.json` (lm-eval's results per model) and `task_scores.csv` to `out_dir`."""
    from azllm.eval.load import load_model_and_tokenizer
    from azllm.model.device import release_memory, select_placement

    placement = placement or select_placement()
    rows, results = [], {}
    for name, spec in models.items():
        model, tokenizer = load_model_and_tokenizer(spec.model_dir, spec.tokenizer_dir, spec.adapter_dir,
                                                    placement=placement)
        if spec.adapter_dir is not None:
            model = model.merge_and_unload()
        scores = evaluate_tasks(model, tokenizer, cfg, model_name=name)
        rows += scores.rows
        results[name] = scores.results
        generation = generation_tasks(scores.results, cfg.tasks) if getattr(spec, "chat", False) else ()
        if generation:  # a chat model's generation tasks once more, prompted as the assistant is used
            chat_name = f"{name} (chat template)"
            chat = evaluate_tasks(model, tokenizer, cfg, model_name=chat_name, names=generation, chat_template=True)
            rows += chat.rows
            results[chat_name] = chat.results
        del model
        release_memory(placement)
    if out_dir is not None:
        write_results(out_dir, rows, results)
    return TaskScores(rows=rows, results=[r for rs in results.values() for r in rs])


def write_results(out_dir: Path, rows: list[dict], results: Any) -> None:
    import pandas as pd
    from lm_eval.utils import handle_non_serializable

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=list(SCORE_COLUMNS)).to_csv(out_dir / "task_scores.csv", index=False)
    (out_dir / "task_results.json").write_text(
        json.dumps(results, indent=2, default=handle_non_serializable, ensure_ascii=False), encoding="utf-8")


def normalised(row: dict[str, Any]) -> float:
    """A primary metric on a common scale: (value - chance) / (1 - chance) for accuracies, chrF / 100."""
    if row["metric"].startswith("chrf"):
        return row["value"] / 100
    chance = row.get("chance") or 0.0
    return (row["value"] - chance) / (1 - chance) if chance < 1 else 0.0


def task_selection_score(rows: list[dict[str, Any]], model: str, tasks: tuple[str, ...]) -> float:
    """Mean over `tasks` of the model's primary metric normalised by chance (`[cpt] select_by = "tasks"`)."""
    picked = [normalised(r) for r in rows if r["model"] == model and r["primary"] and r["task"] in tasks]
    if len(picked) != len(tasks):
        found = sorted({r["task"] for r in rows if r["model"] == model and r["primary"]})
        raise ValueError(f"{model}: primary metrics for {list(tasks)} expected, found {found}")
    return sum(picked) / len(picked)


def format_table(results: list[dict[str, Any]]) -> str:
    """lm-eval's own results table (its `make_table`), one per few-shot setting."""
    from lm_eval.utils import make_table

    return "\n".join(make_table(r) + (make_table(r, "groups") if r.get("groups") else "") for r in results)
