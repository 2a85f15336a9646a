"""Corpus preparation fanned out over groups of shards (the flow's plan_data -> prepare_shards ->
join_data, here without the flow): 1, 2 and 3 groups give byte-identical files and statistics on a
slice of the real shared corpus with every filter on; groups prepared in separate work dirs (as on
separate machines) and moved before the join give the same; the groups are runs of shards.

    .venv/bin/python -m pytest -q tests/test_data_fanout.py
"""

from __future__ import annotations

import json
import shutil
from itertools import islice
from pathlib import Path

import pytest

from azllm.config import DataConfig
from azllm.data.corpus import join_corpus, plan_corpus, prepare_group
from azllm.data.groups import split_groups
from azllm.data.shard_worker import drop_reason
from azllm.data.shards import Shard
from azllm.data.stage import prepare_all

SLICE_LINES = 240
"""Lines of the real corpus in the slice: a few seconds through every filter on one core."""


@pytest.fixture(scope="module")
def corpus_slice(shared_data, tmp_path_factory) -> Path:
    """The first lines of az_corpus plus planted copies: exact and near duplicates of documents
    that lie in other shards, so only a dedup across groups can find them."""
    lines = list(islice(open(shared_data / "az_corpus" / "train-00000.jsonl", encoding="utf-8"), SLICE_LINES))
    texts = [json.loads(line)["text"] for line in lines]
    kept = [t for t in texts if len(t.split()) > 80 and drop_reason(t, DataConfig(), full=True) is None][:6]
    planted = kept[:3] + [t + " Əlavə bir cümlə." for t in kept[3:]]
    path = tmp_path_factory.mktemp("slice") / "az_slice.jsonl"
    path.write_text("".join(lines) + "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n"
                                             for t in planted), encoding="utf-8")
    return path


def slice_config(shared_data: Path, corpus: Path, work: Path) -> DataConfig:
    """Every filter on (language ID, quality, MinHash, decontamination against real evaluation text)."""
    return DataConfig(corpus=(str(corpus),), other_domain=str(shared_data / "az_eval_other_domain.jsonl"),
                      sft_train=str(shared_data / "az_sft" / "train.jsonl"), shard_mb=0.1, num_workers=1,
                      work_dir=str(work))


def outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.fixture(scope="module")
def one_group(shared_data, corpus_slice, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("one")
    stats = prepare_all(slice_config(shared_data, corpus_slice, out / "work"), out / "data", num_groups=1)
    return out / "data", stats


def test_two_and_three_groups_give_the_same_files_and_stats(shared_data, corpus_slice, one_group, tmp_path):
    data_one, stats_one = one_group
    assert stats_one["corpus"]["shards"] >= 4
    dropped = stats_one["corpus"]["dropped"]
    assert dropped["duplicate"] >= 3 and dropped["near_duplicate"] >= 1, dropped  # the planted copies
    for groups in (2, 3):
        stats = prepare_all(slice_config(shared_data, corpus_slice, tmp_path / f"work{groups}"),
                            tmp_path / f"data{groups}", num_groups=groups)
        assert outputs(tmp_path / f"data{groups}") == outputs(data_one), f"{groups} groups: other files"
        assert json.dumps(stats, sort_keys=True) == json.dumps(stats_one, sort_keys=True)
    assert {"train.jsonl", "validation.jsonl", "other_domain.jsonl", "sft_train.jsonl"} <= set(outputs(data_one))


def test_groups_on_separate_machines_then_joined(shared_data, corpus_slice, one_group, tmp_path):
    """What the flow does: each group in its own work dir, exported, moved (a reference download), joined."""
    cfg = slice_config(shared_data, corpus_slice, tmp_path / "plan-work")
    plan = plan_corpus(cfg, tmp_path / "plan", num_groups=2)
    assert plan.num_groups == 2 and all(plan.groups)
    moved = []
    for g in reversed(range(plan.num_groups)):  # the join must not depend on the order groups arrive in
        group_dir = prepare_group(cfg, plan.plan_dir, g, tmp_path / f"group{g}", tmp_path / f"machine{g}")
        moved.append(Path(shutil.move(group_dir, tmp_path / f"downloaded{g}")))
        shutil.rmtree(tmp_path / f"machine{g}")  # the machine is gone: the group holds everything
    joined = join_corpus(cfg, plan.plan_dir, moved, tmp_path / "data")
    data_one, stats_one = one_group
    assert joined.stats == stats_one["corpus"]
    for name in ("train.jsonl", "validation.jsonl", "other_domain.jsonl"):
        assert (tmp_path / "data" / name).read_bytes() == (data_one / name).read_bytes(), name
    with pytest.raises(ValueError, match=r"groups \[0\].*plan has groups 0\.\.1"):
        join_corpus(cfg, plan.plan_dir, moved[1:], tmp_path / "partial")
    assert not (tmp_path / "partial").exists()


def test_groups_are_runs_of_shards_with_about_equal_bytes():
    def shards(sizes):
        return [Shard("corpus", 0, "c.jsonl", size=s) for s in sizes]

    assert split_groups(shards([10] * 6), 2) == [[0, 1, 2], [3, 4, 5]]
    assert split_groups(shards([10] * 5), 3) == [[0, 1], [2, 3], [4]]
    assert split_groups(shards([100, 1, 1, 1]), 2) == [[0], [1, 2, 3]]
    assert split_groups(shards([1, 1, 1, 100]), 3) == [[0, 1], [2], [3]]  # no group left empty
    assert split_groups(shards([5, 5]), 4) == [[0], [1]]  # fewer shards than workers: fewer groups
    assert split_groups(shards([0, 0, 0]), 2) == [[0, 1], [2]]  # S3/HF shards: size unknown
    assert split_groups([], 2) == [[]]
