"""The data stage: corpus and chat records into one directory the later steps read
(its layout, and the :class:`~azllm.data.layout.PreparedData` every later stage takes: :mod:`azllm.data.layout`).

The flow fans the corpus out over machines (`plan_data` -> `prepare_shards` per group ->
`join_data`, see :mod:`azllm.data.corpus`); :func:`prepare_all` runs the same calls on
one machine, and :func:`join_all` is the join's half.

The flow saves it as two references (`steps.artifacts.save_prepared_data`): `corpus`, train.jsonl
alone (the tokenizer and pack steps read it), and `data`, the small rest every later step loads
(``PreparedData(data_dir=..., corpus_dir=...)`` holds either or both).
"""

from __future__ import annotations

from pathlib import Path

from azllm.config import DataConfig


def prepare_all(cfg: DataConfig, out_dir: Path, num_groups: int = 1) -> dict:
    """Prepare corpus and chat records; return their statistics (a small artifact).

    One machine: the chat records are read and checked first (a broken ``sft_train`` stops
    here, with nothing written), then plan, every group, join (`num_groups` changes nothing
    in the output).
    """
    from azllm.data.corpus import prepare_corpus
    from azllm.data.sft import prepare_sft, read_sft

    splits = read_sft(cfg)
    corpus = prepare_corpus(cfg, out_dir, num_groups=num_groups)
    return {"corpus": corpus.stats, "sft": prepare_sft(cfg, out_dir, splits).stats}


def plan_all(cfg: DataConfig, plan_dir: Path, num_groups: int):
    """The fan-out's first half: check the chat records (before any corpus work), then plan the corpus."""
    from azllm.data.corpus import plan_corpus
    from azllm.data.sft import read_sft

    read_sft(cfg)
    return plan_corpus(cfg, plan_dir, num_groups)


def join_all(cfg: DataConfig, plan_dir: Path, group_dirs: list[Path], out_dir: Path) -> dict:
    """The fan-out's join: dedup and mix every group's shards, then the chat records; their statistics."""
    from azllm.data.corpus import join_corpus

    return _with_sft(cfg, join_corpus(cfg, plan_dir, group_dirs, out_dir).stats, out_dir)


def _with_sft(cfg: DataConfig, corpus_stats: dict, out_dir: Path) -> dict:
    from azllm.data.sft import prepare_sft

    return {"corpus": corpus_stats, "sft": prepare_sft(cfg, out_dir).stats}

