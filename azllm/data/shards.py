"""Sources cut into shards, shards run by a process pool, finished shards kept and skipped on a rerun.

A shard is a byte range of an uncompressed local JSONL/txt file, cut at line starts
(about `shard_mb` each), or a whole file / S3 source / HF dataset otherwise (a gzip or
parquet file cannot be entered in the middle). Each finished shard leaves, in its own
directory, its outputs and then `done.json` stamped with a hash of everything that
decides its content (settings, file size and mtime, byte range, code version): a shard
counts as finished only when that stamp matches, so a kill leaves finished shards
reusable and a half-written one invisible.

    >>> shards = plan_shards([("corpus", 0, "data/sample/corpus.jsonl")], shard_mb=1)
    >>> run_shards(shards, work, settings, num_workers=2)   # -> one result dict per shard
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from azllm.data.readers import (
    BadLines,
    DataError,
    handle_bad,
    iter_documents,
    parse_lines,
    resolve_files,
    text_of,
)

logger = logging.getLogger(__name__)

SHARD_CODE_VERSION = 3
"""Bump when the per-shard processing changes: old finished shards are then redone."""
_SCAN_BYTES = 16 << 20


@dataclass(frozen=True)
class Shard:
    """One unit of work: `source` (a path or URL), `start`-`end` bytes (end -1 = whole source)."""

    role: str
    """`validation`, `other_domain` or `corpus`."""
    source_index: int
    source: str
    start: int = 0
    end: int = -1
    first_line: int = 1
    size: int = 0
    """Bytes, for the progress bar (0 when unknown: S3, HF)."""
    mtime_ns: int = 0

    @property
    def reusable(self) -> bool:
        """Only local files: their size and mtime are in the stamp; an S3 object or HF dataset may change."""
        return self.mtime_ns > 0

    @property
    def name(self) -> str:
        digest = hashlib.sha1(f"{self.source}:{self.start}:{self.end}".encode()).hexdigest()[:12]
        return f"{self.role}-{self.source_index:03d}-{Path(self.source).name[:40]}-{self.start}-{digest}"


def plan_shards(sources: list[tuple[str, int, str]], shard_mb: float) -> list[Shard]:
    """`(role, index, source)` triples -> shards, in source then file then byte order."""
    shard_bytes = max(1, int(shard_mb * 2**20))
    shards: list[Shard] = []
    for role, index, source in sources:
        if "://" in source or not _is_local(source):
            shards.append(Shard(role, index, source))
            continue
        for path in resolve_files(source):
            shards.extend(_file_shards(role, index, path, shard_bytes))
    return shards


def _is_local(source: str) -> bool:
    try:
        resolve_files(source)
    except DataError:
        from azllm.data.readers import is_hf_dataset_id

        if is_hf_dataset_id(source):
            return False
        raise
    return True


def _file_shards(role: str, index: int, path: Path, shard_bytes: int) -> list[Shard]:
    """Cut an uncompressed JSONL/txt file at the first line start after every `shard_bytes`.

    One scan of the file counts newlines so each shard knows its first line number
    (errors name `file:line` as before); ~1 GB/s, small next to filtering.
    """
    stat = path.stat()
    whole = Shard(role, index, str(path), size=stat.st_size, mtime_ns=stat.st_mtime_ns)
    if path.name.endswith((".gz", ".parquet")) or stat.st_size <= shard_bytes:
        return [whole]
    cuts = [(0, 1)]
    lines = 0
    target = shard_bytes
    with open(path, "rb") as f:
        pos = 0
        while chunk := f.read(_SCAN_BYTES):
            while target < pos + len(chunk):
                nl = chunk.find(b"\n", max(target - pos, 0))
                if nl < 0:
                    break
                cut = pos + nl + 1
                cuts.append((cut, lines + chunk.count(b"\n", 0, nl + 1) + 1))
                target = cut + shard_bytes
            lines += chunk.count(b"\n")
            pos += len(chunk)
    bounds = [c for c in cuts if c[0] < stat.st_size]
    ends = [c[0] for c in bounds[1:]] + [stat.st_size]
    return [Shard(role, index, str(path), start, end, first, end - start, stat.st_mtime_ns)
            for (start, first), end in zip(bounds, ends)]


def iter_shard_documents(shard: Shard, *, text_field: str, skip_bad_lines: bool,
                         counter: BadLines) -> Iterator[str]:
    """Raw document texts of one shard; bad lines raise or are counted as in `iter_documents`."""
    if shard.end < 0:
        yield from iter_documents(shard.source, text_field=text_field, skip_bad_lines=skip_bad_lines,
                                  counter=counter)
        return
    with open(shard.source, "rb") as f:
        f.seek(shard.start)
        lines = _ranged_lines(f, shard.end - shard.start)
        is_txt = shard.source.endswith(".txt")
        for item in parse_lines(lines, shard.source, is_txt=is_txt, first_line=shard.first_line):
            value = item.value if isinstance(item.value, DataError) else text_of(item.where, item.value, text_field)
            if isinstance(value, DataError):
                handle_bad(value, skip_bad_lines, counter)
                continue
            yield value


def _ranged_lines(f: Any, length: int) -> Iterator[bytes]:
    left = length
    while left > 0:
        line = f.readline(left)
        if not line:
            return
        left -= len(line)
        yield line


# ---------------------------------------------------------------------------
# Running shards
# ---------------------------------------------------------------------------


UNSTAMPED_SETTINGS = ("eval_texts",)
"""Settings that say where something lies on this machine, not what: `eval_texts` is a path (a plan's
copy on each fan-out machine); its content is stamped as `eval_digest`."""


def shard_stamp(shard: Shard, settings: dict[str, Any]) -> str:
    """Hash of what decides a shard's output: a finished shard with another stamp is redone."""
    stamped = {k: v for k, v in settings.items() if k not in UNSTAMPED_SETTINGS}
    blob = json.dumps({"shard": asdict(shard), "settings": stamped, "code": SHARD_CODE_VERSION},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def finished(shard_dir: Path, stamp: str) -> dict[str, Any] | None:
    """The stored result of a finished shard whose stamp matches, else None."""
    try:
        done = json.loads((shard_dir / "done.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return done["result"] if done.get("stamp") == stamp else None


def mark_done(shard_dir: Path, stamp: str, result: dict[str, Any]) -> None:
    """Write the completion marker last, through a temp file and a rename."""
    tmp = shard_dir / ".done.json.tmp"
    tmp.write_text(json.dumps({"stamp": stamp, "result": result}, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, shard_dir / "done.json")


def available_cpus() -> int:
    """CPUs this process may use: affinity mask, capped by a cgroup v2 `cpu.max` quota."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            n = min(n, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


Worker = Callable[[Shard, Path, dict[str, Any], Callable[[int], None]], dict[str, Any]]
"""`worker(shard, shard_dir, settings, progress)`: `progress(n)` reports n more bytes read."""


def run_shards(shards: list[Shard], work_dir: Path, settings: dict[str, Any], worker: Worker,
               num_workers: int, desc: str) -> list[dict[str, Any]]:
    """Run the worker for every unfinished shard; results in shard order.

    A shard whose `done.json` stamp matches is not rerun. `num_workers` 1 runs in this
    process (tests, small corpora); more use a spawn pool (no fork of a process that
    may hold threads or a torch runtime). Workers report bytes read through a queue, so
    the bar moves (and its ETA holds) inside 256 MB shards too.
    """
    stamps = [shard_stamp(s, settings) for s in shards]
    results: list[dict[str, Any] | None] = [finished(shard_dir(work_dir, s, st), st) if s.reusable else None
                                            for s, st in zip(shards, stamps)]
    todo = [i for i, r in enumerate(results) if r is None]
    reused = len(shards) - len(todo)
    if reused:
        logger.info("%s: %d of %d shards already finished, reused", desc, reused, len(shards))
    total = sum(shards[i].size for i in todo)
    with tqdm(total=total, unit="B", unit_scale=True, desc=desc, mininterval=2.0) as bar:
        for i, result in _execute(todo, shards, stamps, work_dir, settings, worker, num_workers, bar):
            results[i] = result
            logger.info("%s: shard %s done: %d read, %d kept, %.1f MB", desc, shards[i].name,
                        result["read"], result["kept"], shards[i].size / 1e6)
    return [r for r in results if r is not None]


def _execute(todo: list[int], shards: list[Shard], stamps: list[str], work_dir: Path, settings: dict[str, Any],
             worker: Worker, num_workers: int, bar: tqdm) -> Iterator[tuple[int, dict]]:
    """Yield (index, result) as shards finish; the bar gets each shard's bytes, exactly, by its end."""
    if num_workers <= 1 or len(todo) <= 1:
        for i in todo:
            before = bar.n
            result = _run_one(worker, shards[i], work_dir, stamps[i], settings, bar.update)
            bar.update(max(0, shards[i].size - (bar.n - before)))
            yield i, result
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ProcessPoolExecutor(max_workers=min(num_workers, len(todo)),
                                                       mp_context=ctx) as pool:
        queue = manager.Queue()
        reported = dict.fromkeys(todo, 0)
        pending = {pool.submit(_run_one, worker, shards[i], work_dir, stamps[i], settings, _Reporter(queue, i)): i
                   for i in todo}
        while pending:
            done, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            _drain(queue, reported, bar)
            for future in done:
                i = pending.pop(future)
                result = future.result()
                _drain(queue, reported, bar)
                bar.update(max(0, shards[i].size - reported[i]))
                reported[i] = shards[i].size
                yield i, result


class _Reporter:
    """Picklable progress callback of one shard: batches bytes, sends (shard index, bytes) to the parent."""

    def __init__(self, queue: Any, index: int, every: int = 4 << 20) -> None:
        self.queue, self.index, self.every, self.pending = queue, index, every, 0

    def __call__(self, n: int) -> None:
        self.pending += n
        if self.pending >= self.every:
            self.queue.put((self.index, self.pending))
            self.pending = 0


def _drain(queue: Any, reported: dict[int, int], bar: tqdm) -> None:
    while not queue.empty():
        i, n = queue.get_nowait()
        reported[i] += n
        bar.update(n)


def shard_dir(work_dir: Path, shard: Shard, stamp: str) -> Path:
    """One directory per shard and stamp: two runs with other settings never share one."""
    return work_dir / f"{shard.name}-{stamp[:10]}"


def _run_one(worker: Worker, shard: Shard, work_dir: Path, stamp: str, settings: dict[str, Any],
             progress: Callable[[int], None]) -> dict:
    out = shard_dir(work_dir, shard, stamp)
    shutil.rmtree(out, ignore_errors=True)  # a half-written attempt
    out.mkdir(parents=True)
    result = {**worker(shard, out, settings, progress), "dir": str(out)}
    mark_done(out, stamp, result)
    return result
