"""A user's own tasks from JSONL, as inline lm-eval task configs (no YAML to write).

multiple_choice: `{"question", "choices", "answer" (index or letter), "subject"?}` a line; the prompt
lists the choices as A., B., ... and the model's loglikelihood of each letter is compared
(lm-eval `multiple_choice`, accuracy), the INCLUDE / MMLU layout. generation: `{"prompt", "reference"}`
a line; greedy up to a blank line, chrF (sacrebleu, lm-eval's `chrf`). Records are checked by
azllm.config.tasks.read_custom_records (file, line, field) when the preset is parsed and again here.
"""

from __future__ import annotations

import functools
from typing import Any

from azllm.config import CustomTaskConfig, resolve_path
from azllm.config.tasks import LETTERS, read_custom_records


def load_custom(task: CustomTaskConfig, **_) -> Any:
    import datasets

    splits = {"test": datasets.Dataset.from_list(read_custom_records(task, resolve_path(task.path)))}
    if task.fewshot_path:
        splits["train"] = datasets.Dataset.from_list(read_custom_records(task, resolve_path(task.fewshot_path)))
    return datasets.DatasetDict(splits)


def mc_text(doc: dict) -> str:
    head = f"Subject: {doc['subject']}\n" if doc.get("subject") else ""
    options = "".join(f"\n{LETTERS[i]}. {c}" for i, c in enumerate(doc["choices"]))
    return f"{head}{doc['question'].strip()}{options}\nAnswer:"


def mc_choices(doc: dict) -> list[str]:
    return list(LETTERS[:len(doc["choices"])])


def mc_target(doc: dict) -> int:
    return int(doc["answer"])


def gen_text(doc: dict) -> str:
    return doc["prompt"].strip() + "\n"


def gen_target(doc: dict) -> str:
    return doc["reference"]


def custom_task_config(task: CustomTaskConfig, *, max_gen_toks: int = 128) -> dict[str, Any]:
    """The inline lm-eval config of `task` (a dict `simple_evaluate` takes in its task list)."""
    common = {"task": task.name, "custom_dataset": functools.partial(load_custom, task), "test_split": "test",
              "fewshot_split": "train" if task.fewshot_path else "test", "metadata": {"version": 1.0}}
    if task.kind == "multiple_choice":
        return {**common, "output_type": "multiple_choice", "doc_to_text": mc_text, "doc_to_choice": mc_choices,
                "doc_to_target": mc_target,
                "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}
    return {**common, "output_type": "generate_until", "doc_to_text": gen_text, "doc_to_target": gen_target,
            "target_delimiter": "", "generation_kwargs": {"until": ["\n\n"], "do_sample": False,
                                                          "max_gen_toks": max_gen_toks},
            "metric_list": [{"metric": "chrf", "aggregation": "chrf", "higher_is_better": True}]}
