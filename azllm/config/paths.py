"""Where things are: the repository root, preset paths resolved against it, the cache directory,
and the one rule for output directories (:func:`check_output_dir`, :func:`staged_dir`)."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
"""The repository root: relative paths in presets are resolved against it."""


def resolve_path(p: str) -> str:
    """Relative paths resolve against the working directory, then the repository root.

    URLs (s3://, hf ids) and absolute paths pass through unchanged.
    """
    if not p or "://" in p or os.path.isabs(p):
        return p
    if Path(p).exists() or any(ch in p for ch in "*?["):
        local = Path(p)
        if local.exists() or list(Path().glob(p)):
            return str(local.resolve())
    candidate = PROJECT_ROOT / p
    if candidate.exists() or any(ch in p for ch in "*?["):
        return str(candidate)
    return p


def cache_dir() -> Path:
    """Where converted models and tokenized data are cached (AZLLM_CACHE, default ~/.cache/azllm)."""
    d = Path(os.environ.get("AZLLM_CACHE", Path.home() / ".cache" / "azllm"))
    d.mkdir(parents=True, exist_ok=True)
    return d


# ---------------------------------------------------------------------------
# Output directories: one rule for every command that writes one
# ---------------------------------------------------------------------------


def check_output_dir(out: str | Path, *, overwrite: bool = False, flag: str = "--out") -> Path:
    """The rule for a command's output directory, checked before any work starts.

    ``out`` must be absent or an empty directory, else the command refuses unless ``overwrite``
    (the whole directory is then replaced, so no stale file survives beside the new ones); a
    file is refused at once; the directory (or its nearest existing parent) must be writable.
    Returns ``out`` as given. Write through :func:`staged_dir` so it is complete or absent.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{flag} {out} is a file; pass a directory path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"{flag} {out} exists and is not empty; pass --overwrite to replace it, or choose "
                         "another directory")
    parent = out.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{flag} {out}: {parent} is a file, not a directory; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"cannot create {flag} {out}: {parent} is not writable by this user; "
                              "choose a directory you can write or fix its permissions", str(parent))
    return out


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def ordinary_permissions(root: str | Path) -> Path:
    """Give ``root`` and everything under it the modes a plain ``mkdir``/``open`` would (umask),
    instead of ``tempfile.mkdtemp``'s 0700 and ``mkstemp``'s 0600; returns ``root``. Without it a
    serving container running as another user cannot read an export."""
    mask = _umask()
    root = Path(root)
    dir_mode, file_mode = 0o777 & ~mask, 0o666 & ~mask
    os.chmod(root, dir_mode)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), dir_mode)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                executable = os.stat(path).st_mode & 0o100
                os.chmod(path, (0o777 & ~mask) if executable else file_mode)
    return root


def publish_dir(tmp: str | Path, final: str | Path) -> Path:
    """Make the finished ``tmp`` (a sibling of ``final``) the directory ``final``, atomically.

    Permissions become ordinary (:func:`ordinary_permissions`); an existing ``final`` (allowed
    by :func:`check_output_dir` with ``overwrite``) is moved aside, replaced, then deleted.
    """
    tmp, final = Path(tmp), Path(final)
    ordinary_permissions(tmp)
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    return final


@contextmanager
def staged_dir(final: str | Path) -> Iterator[Path]:
    """A temporary sibling of ``final`` to write into; published as ``final`` when the block ends
    without an error (:func:`publish_dir`), removed otherwise: never half-written."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        publish_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
