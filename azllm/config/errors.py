"""The error every preset check raises, and the shared range check (docs/DESIGN.md §3)."""

from __future__ import annotations

import errno
import os
import re


class ConfigError(ValueError):
    """A preset is wrong; the message names the key and what is accepted."""


class ReportedFailure(RuntimeError):
    """A failure already reported where it happened (torchrun workers print theirs, and the log
    keeps it): its first line, naming the log, is all the boundary adds; no launcher traceback."""


def check_fraction(key: str, value: float, *, allow_zero: bool) -> None:
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value < 1):
        raise ConfigError(f"{key} must be in {'[' if allow_zero else '('}0, 1), got {value}")


_OS_FIXES = {
    errno.EACCES: ("permission denied", "fix the permissions or choose a path this user can write"),
    errno.EPERM: ("operation not permitted", "fix the permissions or choose a path this user can write"),
    errno.EROFS: ("read-only filesystem", "choose an output on a writable filesystem"),
    errno.ENOSPC: ("no space left on the device", "free space there or choose an output on another disk"),
    errno.EDQUOT: ("disk quota exceeded", "free space there or choose an output on another disk"),
    errno.EFBIG: ("file too large", "raise the file-size limit (ulimit -f) or choose a filesystem that allows "
                                    "larger files"),
    errno.EISDIR: ("is a directory", "pass a file path"),
    errno.ENOTDIR: ("not a directory", "check the path: a part of it is a file"),
}

_SAVE_FAILURE_MARKERS = ("unexpected pos", "PytorchStreamWriter failed writing", "file write failed")


def describe_failure(error: BaseException) -> str | None:
    """One line for an expected failure (bad input, permissions, disk full, file too large), naming
    the path or key and the fix; None for anything else (a bug: its traceback is wanted).

    The command-line boundary (``azllm.cli.main``) prints it instead of a traceback.
    """
    if isinstance(error, OSError) and error.errno in _OS_FIXES:
        cause, fix = _OS_FIXES[error.errno]
        if error.strerror and error.strerror != os.strerror(error.errno):
            return error.strerror  # a sentence of ours, with its own fix
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{cause}; {fix}"
    rust_io = re.search(r"\(os error (\d+)\)", str(error))  # tokenizers and safetensors: Rust's io::Error
    if rust_io and int(rust_io.group(1)) in _OS_FIXES:
        cause, fix = _OS_FIXES[int(rust_io.group(1))]
        return f"writing a file failed ({str(error).splitlines()[0][:160]}): {cause}; {fix}"
    if isinstance(error, FileNotFoundError):
        return str(error) if not error.filename else f"{error.filename}: no such file or directory"
    if isinstance(error, (ValueError, KeyError)) and not isinstance(error, UnicodeError):
        return str(error) if isinstance(error, ValueError) else None
    if isinstance(error, RuntimeError) and any(m in str(error) for m in _SAVE_FAILURE_MARKERS):
        return (f"writing a file failed ({str(error).splitlines()[0][:160]}): the disk is probably full or the "
                "file-size limit was reached; free space or raise the limit (ulimit -f) and run again")
    if isinstance(error, ReportedFailure):
        return str(error).splitlines()[0] + " (its output is above)"
    return None


def check_at_least(section: str, obj: object, minimum: float, *keys: str, note: str = "") -> None:
    """``[section] key must be >= minimum`` for each of ``keys`` (attributes of ``obj``)."""
    for key in keys:
        value = getattr(obj, key)
        if value < minimum:
            raise ConfigError(f"[{section}] {key} must be >= {minimum}{f' ({note})' if note else ''}, got {value}")
