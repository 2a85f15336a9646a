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
