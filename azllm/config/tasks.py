"""Checks on `[eval] tasks` that read files: run by the preset parser, before any model loads.

- every name is a task or group lm-evaluation-harness knows, one azllm ships
  (azllm/eval/lm_tasks) or a `[[eval.custom_tasks]]` name; else the close matches and how to list all;
- a custom task's JSONL: each line's fields and its answer (file, line, field, fix);
- a few-shot count larger than the few-shot pool (custom tasks and local task data);
- tasks that need the Hugging Face hub while it cannot be reached (`HF_HUB_OFFLINE` /
  `HF_DATASETS_OFFLINE`, or no connection): named, with the preset field for local files.

Task names are found by reading `task:` / `group:` / `tag:` lines of the YAML files (0.7 s for
lm-eval's 14,000 files, versus 13 s for its TaskManager index; the scan finds all but ~220 of its
14,683 names, mostly tags); a name not found that way is confirmed against lm-eval's own index
(built once per lm-eval version and cached) before it is refused. This module imports no azllm layer
above config, so the parser can call it.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import json
import os
import re
import socket
from pathlib import Path

from azllm.config.errors import ConfigError
from azllm.config.paths import PROJECT_ROOT, cache_dir, resolve_path
from azllm.config.sections import CustomTaskConfig, EvalConfig

SHIPPED_TASKS_DIR = PROJECT_ROOT / "azllm" / "eval" / "lm_tasks"
"""azllm's own lm-eval task YAML (SIB-200, FLORES-200)."""
SHIPPED_DATA_LAYOUT = {
    "sib200_azj": ("train.tsv", "test.tsv"),
    "flores_azj_eng": ("azj_Latn.dev", "azj_Latn.devtest", "eng_Latn.dev", "eng_Latn.devtest"),
    "flores_eng_azj": ("azj_Latn.dev", "azj_Latn.devtest", "eng_Latn.dev", "eng_Latn.devtest"),
}
"""Files a local directory needs for each shipped task (`[eval.task_data]`)."""
SHIPPED_FEWSHOT_POOL = {"sib200_azj": "train.tsv", "flores_azj_eng": "azj_Latn.dev", "flores_eng_azj": "azj_Latn.dev"}
LIST_HINT = "`azllm eval tasks --list` prints every task name"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

_NAME_LINE = re.compile(r"^['\"]?(task|group|tag)['\"]?:\s*['\"]?([A-Za-z0-9_\-.:]+)['\"]?\s*(#.*)?$", re.M)
_TAG_LIST = re.compile(r"^['\"]?tag['\"]?:\s*\n((?:[ \t]+-[^\n]*\n?)+)", re.M)


def lm_eval_tasks_dir() -> Path | None:
    spec = importlib.util.find_spec("lm_eval")
    return Path(spec.origin).parent / "tasks" if spec and spec.origin else None


@functools.lru_cache(maxsize=4)
def yaml_task_names(root: str) -> dict[str, str]:
    """{name: yaml file} for the `task:` / `group:` / `tag:` names declared in the YAML under `root`."""
    names: dict[str, str] = {}
    for path in Path(root).rglob("*.yaml"):
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in _NAME_LINE.finditer(text):
            names.setdefault(m.group(2), str(path))
        for m in _TAG_LIST.finditer(text):
            for item in m.group(1).splitlines():
                names.setdefault(item.strip().lstrip("-").strip().strip("'\""), str(path))
    return names


@functools.lru_cache(maxsize=1)
def _lm_eval_index() -> frozenset[str]:
    """Every name lm-eval's TaskManager knows (tags and tasks the YAML scan misses: ~2%), cached per
    lm-eval version under AZLLM_CACHE (building it takes ~13 s on 2 cores)."""
    from importlib.metadata import version

    path = cache_dir() / f"lm_eval-{version('lm_eval')}-task-names.json"
    if path.is_file():
        return frozenset(json.loads(path.read_text(encoding="utf-8")))
    from lm_eval.tasks import TaskManager

    names = sorted(TaskManager().all_tasks)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(names), encoding="utf-8")
    tmp.replace(path)
    return frozenset(names)


def known_task_names() -> dict[str, str]:
    """{name: where} for shipped and lm-eval task names (YAML scan)."""
    names = {n: "lm-eval" for n in yaml_task_names(str(lm_eval_tasks_dir()))} if lm_eval_tasks_dir() else {}
    names.update({n: "azllm" for n in yaml_task_names(str(SHIPPED_TASKS_DIR))})
    return names


def check_task_names(names, custom: tuple[str, ...] = (), *, field: str = "[eval] tasks") -> None:
    shipped = yaml_task_names(str(SHIPPED_TASKS_DIR))
    unknown = [n for n in names if n not in shipped and n not in custom]
    if not unknown:
        return
    root = lm_eval_tasks_dir()
    lm = yaml_task_names(str(root)) if root else {}
    unknown = [n for n in unknown if n not in lm]
    if unknown and root:
        index = _lm_eval_index()
        unknown = [n for n in unknown if n not in index]
    if unknown:
        pool = list(shipped) + list(lm) + list(custom)
        parts = [f"{n!r} (close: {difflib.get_close_matches(n, pool, n=5, cutoff=0.6) or 'none'})"
                 for n in unknown]
        raise ConfigError(f"{field}: unknown task(s) {', '.join(parts)}; {LIST_HINT}, or add the task as "
                          "[[eval.custom_tasks]]")


def _jsonl_lines(path: Path, where: str):
    try:
        f = open(path, encoding="utf-8")
    except OSError:
        raise ConfigError(f"{where}: {path} cannot be read (is the path right? relative paths resolve "
                          "against the working directory, then the repository root)") from None
    with f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}:{lineno}: not valid JSON ({e.msg}); one JSON object a line") from None
            if not isinstance(record, dict):
                raise ConfigError(f"{path}:{lineno}: a JSON object is expected, got {type(record).__name__}")
            yield lineno, record


def answer_index(answer, choices: list, where: str) -> int:
    """A multiple-choice answer (0-based index or letter A, B, ...) as an index into `choices`."""
    n = len(choices)
    if isinstance(answer, bool) or not isinstance(answer, (int, str)):
        raise ConfigError(f"{where}: field 'answer' must be an index (0..{n - 1}) or a letter "
                          f"(A..{LETTERS[n - 1]}), got {answer!r}")
    if isinstance(answer, str):
        letter = answer.strip().upper()
        if len(letter) == 1 and letter in LETTERS[:n]:
            return LETTERS.index(letter)
        if answer.strip().isdigit():
            answer = int(answer.strip())
        else:
            raise ConfigError(f"{where}: field 'answer' = {answer!r} is not one of the letters "
                              f"A..{LETTERS[n - 1]} of its {n} choices; give the letter or 0-based index")
    if not 0 <= answer < n:
        raise ConfigError(f"{where}: field 'answer' = {answer} is outside the {n} choices (0..{n - 1}); "
                          "give a 0-based index or a letter")
    return answer


def read_custom_records(task: CustomTaskConfig, path: str | Path) -> list[dict]:
    """The records of a custom task's JSONL, checked and normalised (answer -> 0-based index)."""
    path = Path(path)
    where = f"[[eval.custom_tasks]] {task.name}"
    records = []
    for lineno, r in _jsonl_lines(path, where):
        at = f"{path}:{lineno}"
        if task.kind == "multiple_choice":
            for key, fix in (("question", "the question text"), ("choices", "a list of 2+ answer texts"),
                             ("answer", "the right choice's 0-based index or letter")):
                if key not in r:
                    raise ConfigError(f"{at}: field {key!r} is missing; add {fix}")
            if not isinstance(r["question"], str) or not r["question"].strip():
                raise ConfigError(f"{at}: field 'question' must be non-empty text")
            choices = r["choices"]
            if (not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS)
                    or not all(isinstance(c, str) and c.strip() for c in choices)):
                raise ConfigError(f"{at}: field 'choices' must be a list of 2 to 26 non-empty texts, got {choices!r}")
            subject = r.get("subject", "")
            if not isinstance(subject, str):
                raise ConfigError(f"{at}: field 'subject' must be text, got {subject!r}")
            records.append({"question": r["question"], "choices": choices, "subject": subject,
                            "answer": answer_index(r["answer"], choices, at)})
        else:
            for key in ("prompt", "reference"):
                if not isinstance(r.get(key), str) or not r[key].strip():
                    raise ConfigError(f"{at}: field {key!r} is missing or empty; a generation task needs "
                                      "'prompt' (the input) and 'reference' (the expected answer) as text")
            records.append({"prompt": r["prompt"], "reference": r["reference"]})
    if not records:
        raise ConfigError(f"{where}: {path} has no records")
    return records


def _count_lines(path: Path) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def _check_fewshot(name: str, wanted: int, pool: int, source: str, field: str) -> None:
    if wanted > pool:
        raise ConfigError(f"{field}: {name} asks for {wanted} few-shot examples but its pool ({source}) "
                          f"has {pool}; lower num_fewshot or give a larger pool")


def hub_reachable(timeout: float = 3.0) -> bool:
    if any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
           for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def local_task_data(cfg: EvalConfig) -> dict[str, str]:
    """The `[eval.task_data]` entries whose path exists. A path that does not exist at all (the demo
    preset's `../shared/data/eval` on a machine without it) is not an error here: the task reads
    the hub instead, said once on stderr; offline, :func:`check_hub_tasks` then refuses the run
    before any step starts."""
    local = {}
    for name, path in cfg.task_data.items():
        if Path(resolve_path(path)).exists():
            local[name] = path
        else:
            _say_missing_task_data(name, path)
    return local


@functools.cache
def _say_missing_task_data(name: str, path: str) -> None:
    import sys

    print(f"azllm: note: [eval.task_data] {name} = {path!r} does not exist; {name} reads the Hugging Face "
          "hub instead", file=sys.stderr)


def check_eval_tasks(cfg: EvalConfig, *, check_hub: bool = True) -> None:
    """Everything about `[eval] tasks` that needs files or the network; raises ConfigError."""
    if not cfg.tasks:
        return
    custom = {t.name: t for t in cfg.custom_tasks}
    check_task_names(cfg.tasks, tuple(custom))
    shipped = yaml_task_names(str(SHIPPED_TASKS_DIR))
    local = local_task_data(cfg)
    for name, path in cfg.task_data.items():
        if name in cfg.tasks and name not in local:
            continue  # no such path: read from the hub (local_task_data)
        if name not in cfg.tasks:  # unused here (a CLI --tasks subset), but a typo is still refused
            check_task_names([name], field="[eval.task_data]")
            continue
        p = Path(resolve_path(path))
        if name in shipped:
            missing = [f for f in SHIPPED_DATA_LAYOUT.get(name, ()) if not (p / f).is_file()]
            if missing:
                raise ConfigError(f"[eval.task_data] {name} = {path!r}: {missing} missing there; the directory "
                                  f"needs {list(SHIPPED_DATA_LAYOUT[name])} (as in ../shared/data/eval)")
            _check_fewshot(name, cfg.num_fewshot, _count_lines(p / SHIPPED_FEWSHOT_POOL[name]) - (
                1 if name == "sib200_azj" else 0), str(p / SHIPPED_FEWSHOT_POOL[name]), "[eval] num_fewshot")
        elif not p.is_file():
            raise ConfigError(f"[eval.task_data] {name} = {path!r} is not a file; give a JSONL/Parquet/CSV file "
                              "in the hub dataset's schema")
    for name in cfg.tasks:
        if name not in custom:
            continue
        task = custom[name]
        records = read_custom_records(task, resolve_path(task.path))
        shots = cfg.num_fewshot if task.num_fewshot < 0 else task.num_fewshot
        if task.fewshot_path:
            pool_records = read_custom_records(task, resolve_path(task.fewshot_path))
            _check_fewshot(name, shots, len(pool_records), task.fewshot_path, f"[[eval.custom_tasks]] {name}")
        else:
            _check_fewshot(name, shots, len(records) - 1, f"the other lines of {task.path}",
                           f"[[eval.custom_tasks]] {name}")
    if check_hub:
        check_hub_tasks(cfg)


def check_hub_tasks(cfg: EvalConfig) -> None:
    """Tasks that read the Hugging Face hub (no `[eval.task_data]`, not custom) while it cannot be
    reached: refused, naming them and the preset field for local files. Run by the Metaflow parser
    (a flow run), not by every preset load, so offline tools and tests can still read such presets."""
    custom = {t.name for t in cfg.custom_tasks}
    local = local_task_data(cfg)
    hub = [n for n in cfg.tasks if n not in custom and n not in local]
    if hub and not hub_reachable():
        absent = [f"{n} = {cfg.task_data[n]!r}" for n in hub if n in cfg.task_data]
        raise ConfigError(f"[eval] tasks {hub} read the Hugging Face hub, which cannot be reached (offline)"
                          + (f" (no such [eval.task_data] path: {', '.join(absent)})" if absent else "") + "; "
                          "point each at local files with [eval.task_data] (e.g. sib200_azj = "
                          "\"../shared/data/eval/sib200_azj_Latn\"), or drop them from [eval] tasks")
