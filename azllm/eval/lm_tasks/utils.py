"""Loaders of azllm's shipped lm-eval tasks (`custom_dataset` in their YAML).

Each reads the Hugging Face hub by default, or local files when `data_dir` is given (the
preset's `[eval.task_data]`, passed through the task's `dataset_kwargs`):

- SIB-200 (`sib200_azj`): hub `Davlan/sib200` config `azj_Latn`; locally the repository's
  `{train,dev,test}.tsv` (tab-separated, CSV-quoted, header `index_id category text`).
- FLORES-200 (`flores_azj_eng`, `flores_eng_azj`): hub `openlanguagedata/flores_plus`, one config
  per language, aligned by `id`; locally `{lang}.{dev,devtest}`, one sentence a line, line-aligned.

A loader of our own because lm-eval's `load_dataset` path takes one hub config per task, and a
translation pair needs two (FLORES ships one language per config) plus a local layout.
"""

from __future__ import annotations

import csv
from pathlib import Path

SIB_LABELS = ("science/technology", "travel", "politics", "sports", "health", "entertainment", "geography")


def load_sib200(data_dir: str | None = None, language: str = "azj_Latn", **_):
    import datasets

    if not data_dir:
        hub = datasets.load_dataset("Davlan/sib200", language)
        return datasets.DatasetDict({split: _by_sentence_id(d) for split, d in hub.items()})
    splits = {}
    for split, file in (("train", "train.tsv"), ("validation", "dev.tsv"), ("test", "test.tsv")):
        path = Path(data_dir) / file
        if not path.is_file():
            raise FileNotFoundError(f"SIB-200: {path} is missing; [eval.task_data] sib200_azj must be a directory "
                                    "with train.tsv, dev.tsv and test.tsv (dadelani/sib-200 data/annotated/azj_Latn)")
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        splits[split] = _by_sentence_id(datasets.Dataset.from_dict(
            {key: [str(r[key]) for r in rows] for key in ("index_id", "category", "text")}))
    return datasets.DatasetDict(splits)


def _by_sentence_id(dataset):
    """Rows in FLORES sentence order (`index_id`): the files are sorted by category, so the first N
    rows (`[eval] limit`, few-shot `first_n`) would all be science/technology."""
    order = sorted(range(len(dataset)), key=lambda i: int(dataset[i]["index_id"]))
    return dataset.select(order)


def _flores_lines(data_dir: Path, language: str, split: str) -> list[str]:
    path = data_dir / f"{language}.{split}"
    if not path.is_file():
        raise FileNotFoundError(f"FLORES-200: {path} is missing; [eval.task_data] for a flores task must be a "
                                f"directory with {{azj_Latn,eng_Latn}}.{{dev,devtest}}, one sentence a line")
    return path.read_text(encoding="utf-8").rstrip("\n").split("\n")


def load_flores(source: str, target: str, data_dir: str | None = None, **_):
    import datasets

    splits = {}
    for split in ("dev", "devtest"):
        if data_dir:
            src, tgt = (_flores_lines(Path(data_dir), lang, split) for lang in (source, target))
        else:
            hub = {lang: datasets.load_dataset("openlanguagedata/flores_plus", lang, split=split)
                   for lang in (source, target)}
            by_id = {r["id"]: r["text"] for r in hub[target]}
            src = [r["text"] for r in hub[source]]
            tgt = [by_id[r["id"]] for r in hub[source]]
        if len(src) != len(tgt):
            raise ValueError(f"FLORES-200 {split}: {len(src)} {source} lines but {len(tgt)} {target} lines")
        splits[split] = datasets.Dataset.from_dict({"source": src, "target": tgt})
    return datasets.DatasetDict(splits)
