"""Where things are: the repository root, preset paths resolved against it, the cache directory."""

from __future__ import annotations

import os
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


def umask() -> int:
    """The process's file-creation mask (read from /proc on Linux; elsewhere set and restored)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def ordinary_permissions(root: Path) -> Path:
    """Give `root` and everything under it the modes a plain `mkdir`/`open` would (0777/0666 less the
    umask; executable files keep their x bits), and return it.

    Outputs are built in a `tempfile.mkdtemp` directory (mode 0700) and renamed into place so they are
    never half-written; some writers also create files with `mkstemp` (0600). Call this on the temporary
    directory before the rename, or a serving container running as another user cannot read the result."""
    mask = umask()
    root = Path(root)
    paths = [root, *root.rglob("*")] if root.is_dir() else [root]
    for p in paths:
        if p.is_symlink():
            continue
        if p.is_dir():
            p.chmod(0o777 & ~mask)
        else:
            executable = p.stat().st_mode & 0o111
            p.chmod((0o777 if executable else 0o666) & ~mask)
    return root
