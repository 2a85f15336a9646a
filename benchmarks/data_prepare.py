"""Corpus preparation at scale: a synthetic corpus of N MB, prepared, tokenized, packed; JSON lines out.

    .venv/bin/python benchmarks/data_prepare.py --size-mb 100 --workers 2
    .venv/bin/python benchmarks/data_prepare.py --size-mb 20 --stages prepare   # no tokenizer/packing
    .venv/bin/python benchmarks/data_prepare.py --size-mb 20 --stages prepare --groups 2  # same outputs_sha1

The corpus is built from ../shared/data (never copied into the repository):

- Azerbaijani documents: 6-14 sentences drawn at random from the shared corpus's
  sentences, so documents are distinct (two share a sentence now and then, as real ones do);
- planted exact duplicates (`--exact-frac`) and near duplicates (`--near-frac`: one word
  in 100 changed, word 5-gram Jaccard ~0.9, the band FineWeb-2's 14 x 8 MinHash targets);
- planted non-Azerbaijani documents (`--foreign-frac`): Turkish, English and Russian
  paragraphs written by this project (benchmarks/planted_texts.py), sentences shuffled and
  a tenth of the words dropped so each is distinct.

Stages (one JSON line each: `stage`, `mb`, `seconds`, `mb_per_s`, `peak_rss_gib` of this
process plus its children, sampled every 0.2 s, and `disk_gib` of the work directory):
`generate`, `prepare` (every filter, MinHash, decontamination against the shared validation
and other-domain files, mixing), `tokenizer` (our BPE on train.jsonl), `pack` (tokenize + pack).
The last line: `near_dup_recall`, `near_dup_precision`, `foreign_dropped` (overall and per
language), `azerbaijani_kept`, `adjacent_copies` in train.jsonl (the packing order).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import re
import resource
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from planted_texts import ENGLISH, RUSSIAN, TURKISH  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


class PeakRss:
    """Peak of (this process + all its children) resident memory, sampled in a thread.

    `peak`: summed RSS (what the issue asks for; it counts pages shared between processes,
    such as memory-mapped Arrow files, once per process). `peak_pss`: summed PSS, where a
    shared page is split between its processes, so the sum is the real footprint.
    """

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s, self.peak, self.peak_pss, self._stop = interval_s, 0, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = pss = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    info = p.memory_full_info()
                    total, pss = total + info.rss, pss + getattr(info, "pss", info.rss)
                except psutil.Error:
                    pass
            self.peak, self.peak_pss = max(self.peak, total), max(self.peak_pss, pss)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def disk_gib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**30


def sentences_of_shared() -> list[str]:
    """Sentences of the shared training files, without those sharing a 13-gram with the evaluation
    files (the legal validation split repeats training boilerplate: they would all be decontaminated)."""
    from azllm.data.dedup import ngram_keys

    evaluation: set[int] = set()
    for path in (SHARED / "az_corpus" / "validation.jsonl", SHARED / "az_eval_other_domain.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            evaluation |= ngram_keys(json.loads(line)["text"], 13)
    pool: list[str] = []
    for path in [SHARED / "az_corpus" / "train-00000.jsonl", *sorted((SHARED / "az_corpus_extra").glob("*.jsonl"))]:
        with open(path, encoding="utf-8") as f:
            for line in f:
                pool += [s.strip() for s in _SENTENCE.split(json.loads(line)["text"].replace("\n", " "))
                         if len(s.split()) >= 4]
    return [s for s in pool if evaluation.isdisjoint(ngram_keys(s, 13))]


def mutate_foreign(text: str, rng: random.Random) -> str:
    parts = _SENTENCE.split(text)
    rng.shuffle(parts)
    return " ".join(w for w in " ".join(parts).split(" ") if rng.random() > 0.1)


def near_copy(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    start = rng.randrange(min(100, len(words)))
    return " ".join(f"{w}x" if (i - start) % 100 == 0 else w for i, w in enumerate(words))


def generate(path: Path, size_mb: float, args: argparse.Namespace) -> dict:
    """Write the synthetic corpus; return the planted truth (texts by kind).

    Deterministic in the arguments: when `path` was written with the same ones, only the
    truth is rebuilt and the file (its mtime) stays, so a rerun reuses the finished shards.
    """
    recipe = json.dumps({k: getattr(args, k) for k in ("size_mb", "exact_frac", "near_frac", "foreign_frac",
                                                        "seed")}, sort_keys=True)
    sidecar = path.with_suffix(".recipe.json")
    same = path.exists() and sidecar.exists() and sidecar.read_text() == recipe
    truth = _generate(os.devnull if same else path, size_mb, args)
    sidecar.write_text(recipe)
    return truth


def _generate(path: Path | str, size_mb: float, args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    pool = sentences_of_shared()
    foreign = [("turkish", t) for t in TURKISH] + [("english", t) for t in ENGLISH] + [("russian", t) for t in RUSSIAN]
    truth: dict = {"az": [], "near_pairs": [], "foreign": []}
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        def put(text: str) -> None:
            nonlocal written
            line = json.dumps({"text": text}, ensure_ascii=False) + "\n"
            f.write(line)
            written += len(line.encode())

        while written < size_mb * 1e6:
            r = rng.random()
            if r < args.foreign_frac:
                lang, text = rng.choice(foreign)
                text = mutate_foreign(text, rng)
                truth["foreign"].append((lang, text))
                put(text)
                continue
            text = " ".join(rng.choice(pool) for _ in range(rng.randint(6, 14)))
            truth["az"].append(text)
            put(text)
            if r < args.foreign_frac + args.exact_frac:
                put(text)
            elif r < args.foreign_frac + args.exact_frac + args.near_frac:
                copy = near_copy(text, rng)
                truth["near_pairs"].append((text, copy))
                put(copy)
    return truth


def _cpu_seconds() -> tuple[float, float]:
    """(this process, its finished children) user + system CPU seconds."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def stage_line(stage: str, mb: float, timing: tuple, peak: PeakRss, work: Path, **extra) -> dict:
    """`cpu_s_parent` is the serial part (global dedup, mixing, writing); `cpu_s_workers` the
    shard work a pool spreads over CPUs: wall time on C free CPUs ~ parent + workers / C."""
    seconds, (parent, workers) = timing
    line = {"stage": stage, "mb": round(mb, 1), "seconds": round(seconds, 1),
            "mb_per_s": round(mb / seconds, 2) if seconds else None,
            "cpu_s_parent": round(parent, 1), "cpu_s_workers": round(workers, 1),
            "peak_rss_gib": round(peak.peak / 2**30, 2), "peak_pss_gib": round(peak.peak_pss / 2**30, 2),
            "disk_gib": round(disk_gib(work), 3), **extra}
    print(json.dumps(line), flush=True)
    return line


def outputs_sha1(out: Path) -> str:
    """SHA-1 of the prepared files, in name order: equal for any --workers and --groups."""
    digest = hashlib.sha1()
    for path in sorted(out.glob("*.jsonl")):
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def timed(fn):
    """(result, (wall seconds, (parent CPU s, children CPU s)), peak RSS) of `fn()`."""
    with PeakRss() as peak:
        cpu0, start = _cpu_seconds(), time.perf_counter()
        result = fn()
        seconds, cpu1 = time.perf_counter() - start, _cpu_seconds()
    return result, (seconds, (cpu1[0] - cpu0[0], cpu1[1] - cpu0[1])), peak


def quality_line(truth: dict, out: Path, stats: dict, cfg) -> dict:
    from azllm.data.readers import iter_jsonl_texts
    train = list(iter_jsonl_texts(out / "train.jsonl"))
    outputs = set(train) | set(iter_jsonl_texts(out / "validation.jsonl"))
    kept = _Repaired(outputs)
    from azllm.data.shard_worker import drop_reason

    def passes(text: str) -> bool:
        return drop_reason(kept.repair(text)[0], cfg, full=True) is None

    # judged: pairs whose both texts pass every filter, so only dedup can remove one of them
    pairs = [(a in kept, b in kept) for a, b in truth["near_pairs"] if passes(a) and passes(b)]
    judged = len(pairs)
    found = sum(a != b for a, b in pairs)
    removed = stats["dropped"].get("near_duplicate", 0)
    foreign = {}
    for lang, text in truth["foreign"]:
        n, d = foreign.get(lang, (0, 0))
        foreign[lang] = (n + 1, d + (text not in kept))
    num_foreign = sum(n for n, _ in foreign.values())
    planted_near = {b for _, b in truth["near_pairs"]}
    az = [t for t in truth["az"] if t not in planted_near]
    return {"near_dup_recall": round(found / judged, 4) if judged else None,
            "near_dup_precision": round(found / removed, 4) if removed else None,
            "near_dup_pairs": len(truth["near_pairs"]), "near_dup_pairs_judged": judged, "near_dup_removed": removed,
            "foreign_dropped": round(sum(d for _, d in foreign.values()) / max(1, num_foreign), 4),
            "foreign_dropped_by_language": {k: round(d / n, 4) for k, (n, d) in foreign.items()},
            "azerbaijani_kept": round(len({t for t in az if t in kept}) / max(1, len(set(az))), 4),
            "adjacent_copies": sum(x == y for x, y in zip(train, train[1:])),
            "dropped": stats["dropped"], "near_duplicates": stats["near_duplicates"]}


class _Repaired:
    """`text in kept` asks about the text as preparation writes it (PII placeholders, look-alikes fixed)."""

    def __init__(self, outputs: set[str]) -> None:
        from azllm.data.textfix import repair_text

        self.outputs, self.repair = outputs, repair_text

    def __contains__(self, text: str) -> bool:
        return self.repair(text)[0] in self.outputs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size-mb", type=float, default=50.0, help="synthetic corpus size in MB (10^6 bytes)")
    p.add_argument("--workers", type=int, default=2, help="data.num_workers (0 = all CPUs)")
    p.add_argument("--shard-mb", type=float, default=16.0, help="data.shard_mb (the preset default is 256)")
    p.add_argument("--groups", type=int, default=1,
                   help="[compute] data_workers: groups of shards, run here one after the other (the flow's fan-out)")
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/azllm-data-bench"))
    p.add_argument("--stages", default="prepare,tokenizer,pack", help="comma-separated; generate always runs")
    p.add_argument("--vocab-size", type=int, default=32000)
    p.add_argument("--tokenizer-sample-mb", type=float, default=2000.0, help="[tokenizer] sample_mb")
    p.add_argument("--block-size", type=int, default=2048)
    p.add_argument("--exact-frac", type=float, default=0.02)
    p.add_argument("--near-frac", type=float, default=0.03)
    p.add_argument("--foreign-frac", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    os.environ.setdefault("AZLLM_CACHE", str(args.work_dir / "cache"))
    stages = set(args.stages.split(","))
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)

    corpus = work / "synthetic.jsonl"
    truth, timing, peak = timed(lambda: generate(corpus, args.size_mb, args))
    mb = corpus.stat().st_size / 1e6
    stage_line("generate", mb, timing, peak, work, documents=len(truth["az"]) + len(truth["foreign"]))
    if "prepare" not in stages:
        return 0

    from azllm.config import DataConfig
    from azllm.data.corpus import prepare_corpus

    cfg = DataConfig(corpus=(str(corpus),), validation=(str(SHARED / "az_corpus" / "validation.jsonl"),),
                     other_domain=str(SHARED / "az_eval_other_domain.jsonl"), num_workers=args.workers,
                     shard_mb=args.shard_mb, work_dir=str(work / "shards"))
    out = work / "prepared"
    prepared, timing, peak = timed(lambda: prepare_corpus(cfg, out, num_groups=args.groups))
    stage_line("prepare", mb, timing, peak, work, workers=args.workers, groups=args.groups,
               shards=prepared.stats["shards"], train_mb=round(prepared.stats["train"]["bytes"] / 1e6, 1),
               outputs_sha1=outputs_sha1(out))
    quality = quality_line(truth, out, prepared.stats, cfg)

    train_mb = prepared.stats["train"]["bytes"] / 1e6
    if "tokenizer" in stages:
        from azllm.tokenizer.train import sample_texts, train_tokenizer

        tok, timing, peak = timed(lambda: train_tokenizer(
            sample_texts(prepared.train_path, args.tokenizer_sample_mb), vocab_size=args.vocab_size,
            out_dir=work / "tokenizer", show_progress=False))
        stage_line("tokenizer", train_mb, timing, peak, work, vocab_size=tok.vocab_size)
        if "pack" in stages:
            from azllm.data.packing import pack_corpus

            packed, timing, peak = timed(lambda: pack_corpus(
                prepared.train_path, tok.path, block_size=args.block_size, num_proc=max(1, args.workers),
                cache_root=work / "packed"))
            stage_line("pack", train_mb, timing, peak, work, num_blocks=packed.num_blocks)
    print(json.dumps(quality, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
