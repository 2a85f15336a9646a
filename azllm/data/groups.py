"""Shards in groups for fan-out, and a group's finished shards as a directory that travels.

Preparation scales out by giving each machine (a Metaflow `foreach` task) one group of
corpus shards. A group is a run of consecutive shards, cut so the groups' bytes are
about equal: a pure function of the shard list, so every machine that plans the same
sources gets the same groups, and joining the groups in order gives back the global
shard order on which every dedup and mixing decision depends (1 or W groups, same files).

A group directory holds `group.json` (the shards, as dicts, and their results) and one
sub-directory per shard (hard links to the finished shard in the work dir, a copy across
file systems): it is saved as one model reference and read back on the join's machine
with :func:`load_group`, which points each result's `dir` at where it now lies.

    >>> groups = split_groups(shards, 2)          # [[0, 1, 2], [3, 4]]: shard indices
    >>> export_group(group_shards, results, out)  # out/group.json + out/<shard dirs>
    >>> load_group(out).results                    # each result's `dir` inside `out`
"""

from __future__ import annotations

import json
import os
import shutil
from bisect import bisect_left
from dataclasses import asdict, dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any

from azllm.data.shards import Shard

GROUP_FILE = "group.json"


def split_groups(shards: list[Shard], num_groups: int) -> list[list[int]]:
    """Shard indices in `num_groups` runs of consecutive shards with about equal bytes.

    Group g starts at the first shard that starts at or after g/num_groups of the bytes,
    moved so no group is empty; fewer groups when there are fewer shards (one empty group
    for an empty corpus). Shards of unknown size (S3, HF: size 0) count as one byte each.
    """
    num = max(1, min(num_groups, len(shards)))
    starts_at = list(accumulate((max(1, s.size) for s in shards), initial=0))  # bytes before shard i
    starts = [0]
    for g in range(1, num):
        i = bisect_left(starts_at, starts_at[-1] * g / num, hi=len(shards))
        starts.append(min(max(i, starts[-1] + 1), len(shards) - (num - g)))
    ends = starts[1:] + [len(shards)]
    return [list(range(a, b)) for a, b in zip(starts, ends)]


@dataclass(frozen=True)
class Group:
    """An exported group read back: its index in the plan, its shards and their results."""

    index: int
    shards: list[Shard]
    results: list[dict[str, Any]]


def export_group(shards: list[Shard], results: list[dict[str, Any]], out_dir: Path, index: int = 0) -> Path:
    """Put finished shards (hard links, else copies) and `group.json` into `out_dir`; returns it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for shard, result in zip(shards, results):
        src = Path(result["dir"])
        dest = out_dir / src.name
        dest.mkdir(exist_ok=True)
        for f in src.iterdir():
            _link_or_copy(f, dest / f.name)
        entries.append({"shard": asdict(shard), "result": {**result, "dir": src.name}})
    tmp = out_dir / f".{GROUP_FILE}.tmp"
    tmp.write_text(json.dumps({"index": index, "shards": entries}, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, out_dir / GROUP_FILE)  # last: a group directory without it is unfinished
    return out_dir


def load_group(group_dir: Path) -> Group:
    """An exported group, each result's `dir` pointing inside `group_dir`."""
    path = Path(group_dir) / GROUP_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the group was not finished (prepare_group, the "
                                "prepare_shards step, writes it last)")
    raw = json.loads(path.read_text(encoding="utf-8"))
    entries = raw["shards"]
    return Group(raw["index"], [Shard(**e["shard"]) for e in entries],
                 [{**e["result"], "dir": str(Path(group_dir) / e["result"]["dir"])} for e in entries])


def load_groups(group_dirs: list[Path], num_groups: int) -> Group:
    """Every group of a plan, in plan order, as one: each index 0..num_groups-1 exactly once."""
    groups = sorted((load_group(d) for d in group_dirs), key=lambda g: g.index)
    if [g.index for g in groups] != list(range(num_groups)):
        raise ValueError(f"groups {[g.index for g in groups]} from {[str(d) for d in group_dirs]}, but the plan "
                         f"has groups 0..{num_groups - 1}: pass each group of this plan once")
    return Group(-1, [s for g in groups for s in g.shards], [r for g in groups for r in g.results])


def _link_or_copy(src: Path, dest: Path) -> None:
    dest.unlink(missing_ok=True)
    try:
        os.link(src, dest)
    except OSError:  # another file system (a temp dir beside the cache): copy
        shutil.copy2(src, dest)
