"""Corpus preparation: sources -> shards (parallel: repair, filter, MinHash) -> global dedup -> mix.

    >>> from azllm.config import DataConfig
    >>> prepared = prepare_corpus(DataConfig(max_documents=300), Path("/tmp/azdata"))
    >>> prepared.stats["train"]["documents"]

Three calls, which the flow runs as three steps (`plan_data`, `prepare_shards` per group
on its own machine, `join_data`) and :func:`prepare_corpus` runs one after the other here:

1. :func:`plan_corpus`: the evaluation sources (validation, other-domain) filtered, their
   texts kept for decontamination, the corpus cut into shards (:mod:`azllm.data.shards`)
   and the shards into groups of consecutive shards (:mod:`azllm.data.groups`);
2. :func:`prepare_group`: one group's shards filtered and MinHashed by a process pool
   (:mod:`azllm.data.shard_worker`); finished shards stay in `work_dir` and are skipped
   by a rerun or a Metaflow @retry; the group is exported as one directory;
3. :func:`join_corpus`: exact + MinHash dedup across every shard of every group, in shard
   order, validation by hash, weights by sampling into a hash-ordered shuffle
   (:mod:`azllm.data.dedup`, :mod:`azllm.data.mix`); `train.jsonl`, `validation.jsonl` and, with
   `other_domain` set, `other_domain.jsonl` (one `{"text": ...}` per line; names in
   :mod:`azllm.data.layout`) appear together at the end
   (temp files renamed), so a failed run leaves no half-written file.

Every decision depends on the shards in order, never on how they were grouped, so one
group and W groups give byte-identical files and statistics.

Evaluation text is read first so that a document in both is dropped from *train*
(counted as `duplicate`), and train documents sharing a 13-gram with it are dropped
(`contaminated`): the held-out set stays fixed when the corpus changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from azllm.config import DataConfig, cache_dir, resolve_path
from azllm.data.dedup import Survivors, dedup_shards, drop_overlapping, read_line, read_text
from azllm.data.groups import export_group, load_group, load_groups, split_groups
from azllm.data.layout import OTHER_DOMAIN, TRAIN, VALIDATION
from azllm.data.mix import copies_for, split_validation, train_order, unit_hash
from azllm.data.readers import DataError
from azllm.data.shard_worker import EXAMPLE_CHARS, MAX_EXAMPLES, process_shard
from azllm.data.shards import Shard, available_cpus, plan_shards, run_shards
from azllm.data.stats import empty_stats

logger = logging.getLogger(__name__)

DROP_REASONS = ("too_short", "non_latin", "duplicate", "bad_lines")
"""Reasons always present in `stats["dropped"]` (0 when none); filters add their own keys."""
PARENT_ONLY_FIELDS = ("num_workers", "work_dir", "shard_mb", "corpus_weights", "validation_fraction",
                      "max_validation_documents", "seed", "near_dedup", "sft_train", "sft_validation",
                      "sft_validation_fraction")
"""Settings the shards do not depend on: left out of their stamp, so changing them reuses the shards
(the shard's byte range stands for `shard_mb`)."""
PLAN_FILE = "plan.json"
EVAL_TEXTS = "eval_texts.jsonl"
__all__ = ["AtomicJsonl", "CorpusPlan", "PreparedCorpus", "copies_for", "join_corpus", "plan_corpus",
           "prepare_corpus", "prepare_group", "unit_hash"]


@dataclass(frozen=True)
class CorpusPlan:
    """Where the plan lies (`plan_dir`) and the corpus shard indices of each group."""

    plan_dir: Path
    groups: list[list[int]]

    @property
    def num_groups(self) -> int:
        return len(self.groups)


@dataclass(frozen=True)
class PreparedCorpus:
    train_path: Path
    validation_path: Path
    other_domain_path: Path | None
    stats: dict[str, Any]
    """Per split: documents/bytes/words/chars; `dropped`: counts by reason; `sources`: read/kept each;
    `dropped_by_source`, `dropped_examples`, `repairs`, `near_duplicates`, `shards` (see `filter_rows`)."""


class AtomicJsonl:
    """JSONL outputs written to temp files in `out_dir`, renamed into place only on success.

    Why: a step that dies half-way must not leave a plausible-looking truncated
    train.jsonl for a retry or the next step to pick up.
    """

    def __init__(self, out_dir: Path, names: list[str]) -> None:
        self.out_dir = out_dir
        self.names = names
        self._files: dict[str, IO[str]] = {}

    def __enter__(self) -> Self:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name in self.names:
            self._files[name] = self._open_temp(name)
        return self

    def _open_temp(self, name: str) -> IO[str]:
        return tempfile.NamedTemporaryFile(  # closed in __exit__, after the last write
            "w", encoding="utf-8", dir=self.out_dir, prefix=f".{name}.", suffix=".tmp", delete=False)

    def write(self, name: str, record: dict[str, Any]) -> None:
        self._files[name].write(json.dumps(record, ensure_ascii=False) + "\n")

    def write_line(self, name: str, line: str) -> None:
        """A line already in JSONL form (newline included)."""
        self._files[name].write(line)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for f in self._files.values():
            f.close()
        for name, f in self._files.items():
            if exc_type is None:
                os.chmod(f.name, 0o644)  # temp files are created 0600; outputs are shared with later steps
                os.replace(f.name, self.out_dir / name)
            else:
                Path(f.name).unlink(missing_ok=True)


def prepare_corpus(cfg: DataConfig, out_dir: Path, work_dir: Path | None = None,
                   num_groups: int = 1) -> PreparedCorpus:
    """Write train/validation(/other_domain) JSONL into `out_dir` and return paths and stats.

    The one-machine path of the flow's fan-out, through the same three calls: plan, every
    group here one after the other, join (`num_groups` changes nothing in the output).
    `work_dir` keeps finished shards between attempts (default `data.work_dir`, else
    AZLLM_CACHE/prepare); shards whose stamp matches are reused, not redone.
    """
    work = _work_dir(cfg, work_dir)
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work, prefix=".groups-") as tmp:  # beside the shards: hard links
        plan = plan_corpus(cfg, Path(tmp) / "plan", num_groups, work)
        group_dirs = [prepare_group(cfg, plan.plan_dir, g, Path(tmp) / f"group-{g}", work)
                      for g in range(plan.num_groups)]
        return join_corpus(cfg, plan.plan_dir, group_dirs, out_dir)


def plan_corpus(cfg: DataConfig, plan_dir: Path, num_groups: int, work_dir: Path | None = None) -> CorpusPlan:
    """Filter the evaluation text, cut the corpus into shards and those into `num_groups` groups.

    `plan_dir` (small: the evaluation shards, their texts for decontamination, `plan.json`)
    is what every group and the join read; the flow saves it as one reference.
    """
    work = _work_dir(cfg, work_dir)
    workers = cfg.num_workers or available_cpus()
    shard_fields = {k: v for k, v in asdict(cfg).items() if k not in PARENT_ONLY_FIELDS}
    settings = {"data": json.dumps(shard_fields, sort_keys=True, ensure_ascii=False), "eval_digest": ""}
    eval_sources = [("validation", i, resolve_path(s)) for i, s in enumerate(cfg.validation)]
    if cfg.other_domain:
        eval_sources.append(("other_domain", 0, resolve_path(cfg.other_domain)))
    eval_shards = plan_shards(eval_sources, cfg.shard_mb)
    eval_results = run_shards(eval_shards, work, {**settings, "eval_texts": ""}, process_shard, workers,
                              "filter evaluation text")
    export_group(eval_shards, eval_results, plan_dir / "evaluation")
    settings["eval_digest"] = _write_eval_texts(cfg, eval_results, plan_dir / EVAL_TEXTS)
    corpus_shards = _corpus_shards(cfg)
    groups = split_groups(corpus_shards, num_groups)
    logger.info("prepare corpus: %d evaluation + %d corpus shards in %d group(s), %d workers, work dir %s",
                len(eval_shards), len(corpus_shards), len(groups), workers, work)
    plan = {"settings": settings, "groups": groups, "corpus_shards": [_shard_key(s) for s in corpus_shards]}
    tmp = plan_dir / f".{PLAN_FILE}.tmp"
    tmp.write_text(json.dumps(plan, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, plan_dir / PLAN_FILE)  # last: a plan directory without it is unfinished
    return CorpusPlan(plan_dir=plan_dir, groups=groups)


def prepare_group(cfg: DataConfig, plan_dir: Path, group: int, out_dir: Path,
                  work_dir: Path | None = None) -> Path:
    """Filter and MinHash one group's shards (a process pool) and export them into `out_dir`.

    The shards are planned again here, from the sources as this machine sees them (a path
    in the plan may not exist on another machine), and must match the plan's.
    """
    plan = json.loads((plan_dir / PLAN_FILE).read_text(encoding="utf-8"))
    shards = _corpus_shards(cfg)
    if [_shard_key(s) for s in shards] != plan["corpus_shards"]:
        raise DataError(f"the corpus sources {list(cfg.corpus)} are cut into other shards here than in the plan "
                        f"({plan_dir}): a source changed between plan_data and prepare_shards; rerun from plan_data")
    picked = [shards[i] for i in plan["groups"][group]]
    eval_texts = plan_dir / EVAL_TEXTS
    settings = {**plan["settings"], "eval_texts": str(eval_texts) if eval_texts.exists() else ""}
    results = run_shards(picked, _work_dir(cfg, work_dir), settings, process_shard,
                         cfg.num_workers or available_cpus(), f"filter corpus group {group + 1}/{len(plan['groups'])}")
    return export_group(picked, results, out_dir, index=group)


def join_corpus(cfg: DataConfig, plan_dir: Path, group_dirs: list[Path], out_dir: Path) -> PreparedCorpus:
    """Exact + near dedup over the evaluation shards and every group (in shard order), then mix and write."""
    plan = json.loads((plan_dir / PLAN_FILE).read_text(encoding="utf-8"))
    evaluation, corpus = load_group(plan_dir / "evaluation"), load_groups(group_dirs, len(plan["groups"]))
    assert [_shard_key(s) for s in corpus.shards] == plan["corpus_shards"], \
        f"{len(corpus.shards)} corpus shards in the groups, {len(plan['corpus_shards'])} in the plan"
    shards, results = evaluation.shards + corpus.shards, evaluation.results + corpus.results
    survivors = dedup_shards(shards, results, cfg)
    stats = _shard_stats(cfg, shards, results, survivors)
    stats.update(_write_outputs(cfg, out_dir, survivors, stats))
    return PreparedCorpus(
        train_path=out_dir / TRAIN,
        validation_path=out_dir / VALIDATION,
        other_domain_path=out_dir / OTHER_DOMAIN if cfg.other_domain else None,
        stats=stats,
    )


def _work_dir(cfg: DataConfig, work_dir: Path | None) -> Path:
    return Path(work_dir or resolve_path(cfg.work_dir) or cache_dir() / "prepare")


def _corpus_shards(cfg: DataConfig) -> list[Shard]:
    return plan_shards([("corpus", i, resolve_path(s)) for i, s in enumerate(cfg.corpus)], cfg.shard_mb)


def _shard_key(shard: Shard) -> list:
    """What must agree between the plan's machine and a group's: not the path, which may differ."""
    return [shard.role, shard.source_index, Path(shard.source).name, shard.start, shard.end, shard.size]


def _write_eval_texts(cfg: DataConfig, eval_results: list[dict[str, Any]], path: Path) -> str:
    """Every evaluation text (validation, other-domain, SFT validation) in one file for decontamination.

    Returns its SHA-1 (which goes into the corpus shards' stamp: new evaluation text redoes
    them), "" with decontamination off (no file). SFT validation records held out by
    fraction are not known here.
    """
    if not cfg.decontaminate_ngram:
        return ""
    texts = [json.loads(line)["text"] for r in eval_results
             for line in (Path(r["dir"]) / "docs.jsonl").read_text(encoding="utf-8").splitlines()]
    if cfg.sft_validation:
        from azllm.data.readers import iter_records

        for _, record in iter_records(resolve_path(cfg.sft_validation), skip_bad_lines=True):
            texts += [m["content"] for m in record.get("messages", []) if isinstance(m, dict)
                      and isinstance(m.get("content"), str)]
    blob = "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts)
    path.write_text(blob, encoding="utf-8")
    return hashlib.sha1(blob.encode()).hexdigest()


def _write_outputs(cfg: DataConfig, out_dir: Path, survivors: Survivors,
                   drop_stats: dict[str, Any]) -> dict[str, Any]:
    """The JSONL files, atomically (none if a split is empty); returns the per-split size stats."""
    names = [TRAIN, VALIDATION] + ([OTHER_DOMAIN] if cfg.other_domain else [])
    stats: dict[str, Any] = {name.removesuffix(".jsonl"): empty_stats() for name in names}
    train, held_out = split_validation(survivors.by_role["corpus"], cfg)
    train, overlapping = drop_overlapping(train, held_out, lambda ref: read_text(ref, survivors.handles),
                                          cfg.decontaminate_ngram)
    _count_dropped(drop_stats, cfg, "contaminated", overlapping, survivors.handles)
    plan = {VALIDATION: survivors.by_role["validation"] + held_out,
            OTHER_DOMAIN: survivors.by_role["other_domain"],
            TRAIN: train_order(train, cfg)}
    try:
        with AtomicJsonl(out_dir, names) as out:
            for name in names:
                split = stats[name.removesuffix(".jsonl")]
                for ref in plan[name]:
                    out.write_line(name, read_line(ref, survivors.handles).decode("utf-8"))
                    words, chars, nbytes = ref.size
                    split["documents"] += 1
                    split["words"] += words
                    split["chars"] += chars
                    split["bytes"] += nbytes
            _check_not_empty(cfg, {**drop_stats, **stats})
    finally:
        survivors.close()
    stats["num_unique_train_documents"] = len(train)
    return stats


def _count_dropped(stats: dict[str, Any], cfg: DataConfig, reason: str, refs: list, handles: dict) -> None:
    """Add documents dropped in the join to the reason's count, its source's and its examples."""
    if not refs:
        return
    stats["dropped"][reason] = stats["dropped"].get(reason, 0) + len(refs)
    for ref in refs:
        source = stats["dropped_by_source"].setdefault(cfg.corpus[ref.source_index], {})
        source[reason] = source.get(reason, 0) + 1
        stats["sources"][ref.source_index]["kept"] -= 1
    examples = stats["dropped_examples"].setdefault(reason, [])
    examples.extend(read_text(ref, handles)[:EXAMPLE_CHARS] for ref in refs[: max(0, MAX_EXAMPLES - len(examples))])


def _shard_stats(cfg: DataConfig, shards: list[Shard], results: list[dict[str, Any]],
                 survivors: Survivors) -> dict[str, Any]:
    """Drop counts by reason and by source, examples, repairs, cluster sizes: the card's rows."""
    dropped: Counter = Counter(dict.fromkeys(DROP_REASONS, 0))
    by_source: dict[str, Counter] = {}
    examples: dict[str, list[str]] = {}
    repairs: Counter = Counter()
    bad_examples: list[str] = []
    per_source = [{"source": s, "weight": (cfg.corpus_weights or (1.0,) * len(cfg.corpus))[i], "read": 0, "kept": 0}
                  for i, s in enumerate(cfg.corpus)]
    budget = cfg.max_documents or float("inf")
    for shard, result in zip(shards, results):
        name = cfg.corpus[shard.source_index] if shard.role == "corpus" else shard.role
        dropped.update(result["dropped"])
        dropped["bad_lines"] += result["bad_lines"]
        by_source.setdefault(name, Counter()).update(result["dropped"])
        for reason, texts in result["examples"].items():
            examples.setdefault(reason, []).extend(texts[: 3 - len(examples.get(reason, []))])
        repairs.update(result["repairs"])
        bad_examples += result["bad_line_examples"][: 5 - len(bad_examples)]
        if shard.role == "corpus":
            read = min(result["read"], budget)
            per_source[shard.source_index]["read"] += read
            budget -= read
    dropped.update(survivors.dropped)
    for index, counts in survivors.dropped_by_source.items():
        by_source.setdefault(cfg.corpus[index] if index >= 0 else "evaluation", Counter()).update(counts)
    for reason, texts in survivors.examples.items():
        examples.setdefault(reason, []).extend(texts)
    for ref in survivors.by_role["corpus"]:
        per_source[ref.source_index]["kept"] += 1
    return {"dropped": dict(dropped), "dropped_by_source": {k: dict(v) for k, v in by_source.items()},
            "dropped_examples": examples, "repairs": dict(repairs), "bad_line_examples": bad_examples,
            "near_duplicates": survivors.clusters, "sources": per_source, "shards": len(shards)}


def _check_not_empty(cfg: DataConfig, stats: dict[str, Any]) -> None:
    if stats["train"]["documents"] == 0:
        raise DataError(
            f"no training documents left after cleaning sources {list(cfg.corpus)}: dropped "
            f"{stats['dropped']}, {stats['validation']['documents']} held out for validation "
            f"(min_chars={cfg.min_chars}, min_latin_fraction={cfg.min_latin_fraction}, "
            f"text_field={cfg.text_field!r}); check the sources and these settings "
            "(filters: data.langid, [data.quality])"
        )
    if stats["validation"]["documents"] == 0:
        where = (f"validation sources {list(cfg.validation)} have no documents left after cleaning"
                 if cfg.validation else
                 f"the {cfg.validation_fraction} hold-out of {stats['train']['documents']} training "
                 "documents is empty")
        raise DataError(f"validation split is empty: {where}; raise data.validation_fraction, "
                        f"give more data, or set data.validation (dropped: {stats['dropped']})")
