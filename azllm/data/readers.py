"""Stream raw documents from files, directories, globs, S3 and Hugging Face datasets.

Every reader is a generator: a corpus is never held in memory, only the current
line (or parquet record batch). Supported formats, each optionally gzipped (`.gz`):

- `.jsonl` / `.json`: JSON lines, one object per line, the text under `text_field`;
- `.txt`: one document per non-empty line (simplest rule that streams; paragraphs
  that span lines must be joined upstream or stored as JSONL);
- `.parquet`: read in record batches, only the needed column;
- `s3://bucket/key` (one object) or `s3://bucket/prefix` (every supported object
  under it, sorted), through boto3, which honours `AWS_ENDPOINT_URL`;
- a Hugging Face dataset id: `hf://owner/name[:split]`, or `owner/name[:split]` when
  no such local path exists; read with `datasets.load_dataset(..., streaming=True)`.

    >>> from azllm.data.readers import iter_documents
    >>> next(iter_documents("data/sample/corpus.jsonl"))[:20]

Bad input raises :class:`DataError` naming the file and line. With
`skip_bad_lines=True` the bad line is skipped and counted in a :class:`BadLines`.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".txt", ".parquet")
_GLOB_CHARS = "*?["
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(:[\w.-]+)?$")
_CHUNK_BYTES = 1 << 20
"""S3 bodies are read in 1 MiB chunks and split into lines by us (see `_split_lines`)."""


class DataError(ValueError):
    """Bad input data; the message names the file (and line) and the reason."""


@dataclass
class BadLines:
    """Lines skipped with `skip_bad_lines=True`: how many, and the first few reasons."""

    count: int = 0
    examples: list[str] = field(default_factory=list)
    max_examples: int = 5

    def add(self, error: DataError) -> None:
        self.count += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(str(error))


class _TextLine(str):
    """A line of a .txt file: a document as is (a bare JSON string in a .jsonl file is not)."""


@dataclass(frozen=True)
class _Item:
    """One unit read from a source: `where` is `file:line`, `value` the payload or a DataError.

    Errors travel as values so the generator survives a bad line when skipping.
    """

    where: str
    value: Any


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def iter_documents(source: str, *, text_field: str = "text", skip_bad_lines: bool = False,
                   counter: BadLines | None = None) -> Iterator[str]:
    """Yield the raw text of every document in `source` (see the module docstring for forms)."""
    for item in _iter_items(source, columns=(text_field,)):
        value = item.value
        if not isinstance(value, DataError):
            value = text_of(item.where, value, text_field)
        if isinstance(value, DataError):
            handle_bad(value, skip_bad_lines, counter)
            continue
        yield value


def iter_records(source: str, *, skip_bad_lines: bool = False,
                 counter: BadLines | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield `(where, record)` for every JSON object in a JSONL file/dir/glob, S3 object or HF dataset.

    `where` is `file:line`, for error messages further down (e.g. chat validation).
    """
    for item in _iter_items(source, columns=None):
        value = item.value
        if not isinstance(value, (dict, DataError)):
            value = DataError(f"{item.where}: expected a JSON object, got {type(value).__name__}")
        if isinstance(value, DataError):
            handle_bad(value, skip_bad_lines, counter)
            continue
        yield item.where, value


def iter_jsonl_texts(path: str | Path, *, text_field: str = "text") -> Iterator[str]:
    """Read back a prepared `{"text": ...}` JSONL file (train.jsonl, validation.jsonl ...)."""
    yield from iter_documents(str(path), text_field=text_field)


def resolve_files(source: str) -> list[Path]:
    """The local files a path, directory or glob names, sorted; DataError if there are none."""
    if any(ch in source for ch in _GLOB_CHARS):
        matches = sorted(Path(p) for p in glob.glob(source, recursive=True))
        files = [f for p in matches for f in (_files_in_dir(p) if p.is_dir() else [p])
                 if _is_supported(f.name)]
        if not files:
            raise DataError(f"{source}: no supported files ({', '.join(SUPPORTED_SUFFIXES)}, "
                            "optionally .gz) match this glob")
        return files
    path = Path(source)
    if path.is_dir():
        files = _files_in_dir(path)
        if not files:
            raise DataError(f"{source}: directory has no supported files "
                            f"({', '.join(SUPPORTED_SUFFIXES)}, optionally .gz)")
        return files
    if path.is_file():
        if not _is_supported(path.name):
            raise DataError(f"{source}: unsupported format; expected one of "
                            f"{', '.join(SUPPORTED_SUFFIXES)} (optionally .gz)")
        return [path]
    raise DataError(f"{source}: no such file or directory")


def is_hf_dataset_id(source: str) -> bool:
    """`hf://...`, or `owner/name[:split]` that is not an existing local path nor a file name."""
    if source.startswith("hf://"):
        return True
    if "://" in source or os.path.exists(source) or _is_supported(source.split(":")[0]):
        return False
    return bool(_HF_ID.match(source))


# ---------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------


def _iter_items(source: str, columns: tuple[str, ...] | None) -> Iterator[_Item]:
    if source.startswith("s3://"):
        yield from _iter_s3(source, columns)
    elif is_hf_dataset_id(source):
        yield from _iter_hf(source)
    else:
        for path in resolve_files(source):
            yield from _iter_local_file(path, columns)


def text_of(where: str, record: Any, text_field: str) -> str | DataError:
    if isinstance(record, _TextLine):
        return str(record)
    if not isinstance(record, dict):
        return DataError(f"{where}: expected a JSON object with field {text_field!r}, "
                         f"got {type(record).__name__}")
    if text_field not in record:
        return DataError(f"{where}: record has no field {text_field!r} (fields: {sorted(record)[:10]}); "
                         "set data.text_field")
    text = record[text_field]
    if not isinstance(text, str):
        return DataError(f"{where}: field {text_field!r} must be a string, got {type(text).__name__}")
    return text


def handle_bad(error: DataError, skip: bool, counter: BadLines | None) -> None:
    if not skip:
        raise error
    if counter is not None:
        counter.add(error)


def _strip_gz(name: str) -> str:
    return name.removesuffix(".gz")


def _is_supported(name: str) -> bool:
    return _strip_gz(name).endswith(SUPPORTED_SUFFIXES)


def _files_in_dir(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file() and _is_supported(p.name))


# ---------------------------------------------------------------------------
# Local files
# ---------------------------------------------------------------------------


def _iter_local_file(path: Path, columns: tuple[str, ...] | None) -> Iterator[_Item]:
    name = _strip_gz(path.name)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            if name.endswith(".parquet"):
                yield from _iter_parquet(f, str(path), columns)
            else:
                yield from parse_lines(f, str(path), is_txt=name.endswith(".txt"))
    except (OSError, EOFError) as e:  # corrupt gzip stream, for example
        raise DataError(f"{path}: cannot read: {e}") from None


def parse_lines(lines: Iterable[bytes], where: str, *, is_txt: bool, first_line: int = 1) -> Iterator[_Item]:
    """Decode and parse line by line; line numbers are 1-based like editors show.

    `first_line`: the number of the first line given (a shard that starts inside a file).
    """
    for lineno, raw in enumerate(lines, start=first_line):
        loc = f"{where}:{lineno}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            yield _Item(loc, DataError(f"{loc}: invalid UTF-8 ({e.reason} at byte {e.start})"))
            continue
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        if is_txt:
            yield _Item(loc, _TextLine(line))
            continue
        try:
            yield _Item(loc, json.loads(line))
        except json.JSONDecodeError as e:
            hint = " (.json files are read as JSON lines: one object per line)" if ".json:" in loc else ""
            yield _Item(loc, DataError(f"{loc}: invalid JSON: {e}{hint}"))


def _iter_parquet(f: IO[bytes], where: str, columns: tuple[str, ...] | None) -> Iterator[_Item]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pfile = pq.ParquetFile(f)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{where}: not a readable parquet file: {e}") from None
    names = pfile.schema_arrow.names
    missing = [c for c in columns or () if c not in names]
    if missing:
        raise DataError(f"{where}: parquet file has no column(s) {missing} (columns: {names}); "
                        "set data.text_field")
    row = 0
    for batch in pfile.iter_batches(batch_size=1024, columns=list(columns) if columns else None):
        for record in batch.to_pylist():
            row += 1
            yield _Item(f"{where}:row {row}", record)


# ---------------------------------------------------------------------------
# S3
# ---------------------------------------------------------------------------


def _s3_client() -> Any:
    """boto3 (>= 1.28) reads AWS_ENDPOINT_URL itself, so moto/MinIO endpoints need no code here."""
    import boto3

    return boto3.client("s3")


def _parse_s3_url(url: str) -> tuple[str, str]:
    rest = url[len("s3://"):]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise DataError(f"{url}: expected s3://bucket/key-or-prefix")
    return bucket, key


def _s3_keys(client: Any, url: str, bucket: str, key: str) -> list[str]:
    """The object itself if `key` names one, else every supported object under the prefix."""
    from botocore.exceptions import BotoCoreError, ClientError

    if key and not key.endswith("/"):
        try:
            client.head_object(Bucket=bucket, Key=key)
            return [key]
        except BotoCoreError as e:
            raise DataError(f"{url}: cannot access: {e}; check AWS credentials and AWS_ENDPOINT_URL") from None
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise DataError(f"{url}: cannot access: {e}") from None
    keys: list[str] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
            keys.extend(o["Key"] for o in page.get("Contents", []) if _is_supported(o["Key"]))
    except (ClientError, BotoCoreError) as e:  # BotoCoreError: no credentials, endpoint unreachable
        raise DataError(f"{url}: cannot list: {e}; check AWS credentials and AWS_ENDPOINT_URL") from None
    if not keys:
        raise DataError(f"{url}: no such S3 object, and no supported objects under this prefix")
    return sorted(keys)


def _iter_s3(url: str, columns: tuple[str, ...] | None) -> Iterator[_Item]:
    client = _s3_client()
    bucket, key = _parse_s3_url(url)
    for k in _s3_keys(client, url, bucket, key):
        where = f"s3://{bucket}/{k}"
        if _strip_gz(k).endswith(".parquet"):
            yield from _iter_s3_parquet(client, bucket, k, where, columns)
            continue
        body = client.get_object(Bucket=bucket, Key=k)["Body"]
        try:
            stream: Iterable[bytes] = gzip.GzipFile(fileobj=body) if k.endswith(".gz") else _split_lines(body)
            yield from parse_lines(stream, where, is_txt=_strip_gz(k).endswith(".txt"))
        finally:
            body.close()


def _iter_s3_parquet(client: Any, bucket: str, key: str, where: str,
                     columns: tuple[str, ...] | None) -> Iterator[_Item]:
    """Parquet needs random access: spool the object to a temporary file (disk, not memory)."""
    with tempfile.TemporaryFile() as tmp:
        client.download_fileobj(bucket, key, tmp)
        tmp.seek(0)
        f: IO[bytes] = gzip.GzipFile(fileobj=tmp) if key.endswith(".gz") else tmp
        yield from _iter_parquet(f, where, columns)


def _split_lines(body: IO[bytes]) -> Iterator[bytes]:
    """Split a byte stream on b"\\n" only (botocore's iter_lines also splits on a bare \\r)."""
    pending = b""
    while chunk := body.read(_CHUNK_BYTES):
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        yield from lines
    if pending:
        yield pending


# ---------------------------------------------------------------------------
# Hugging Face datasets
# ---------------------------------------------------------------------------


def _parse_hf_id(source: str) -> tuple[str, str]:
    name = source.removeprefix("hf://")
    if ":" in name and not os.path.exists(name):
        name, split = name.rsplit(":", 1)
        return name, split
    return name, "train"


def _iter_hf(source: str) -> Iterator[_Item]:
    import datasets

    name, split = _parse_hf_id(source)
    try:
        ds = datasets.load_dataset(name, split=split, streaming=True)
    except Exception as e:  # noqa: BLE001 - offline, unknown id, bad split: many unrelated types
        raise DataError(f"{source}: not an existing local path, and cannot load Hugging Face dataset "
                        f"{name!r} split {split!r}: {type(e).__name__}: {e}") from None
    for i, record in enumerate(ds):
        yield _Item(f"{source}:record {i + 1}", record)
