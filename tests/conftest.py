"""Shared fixtures. Run all tests with `make test` (or `.venv/bin/python -m pytest -q tests`).

Real data lives in ../shared/data beside the repository (never copied into it).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# Converted models and tokenized data are cached here for the whole suite.
os.environ.setdefault("AZLLM_CACHE", str(REPO_ROOT / ".cache" / "azllm"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("METAFLOW_USER", "azllm-tests")
# Flow runs made by the tests go to a throwaway local datastore, not the repo's .metaflow.
os.environ.setdefault("METAFLOW_DATASTORE_SYSROOT_LOCAL", tempfile.mkdtemp(prefix="azllm-mf-"))
os.environ.setdefault("METAFLOW_DEFAULT_DATASTORE", "local")
os.environ.setdefault("METAFLOW_DEFAULT_METADATA", "local")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data; its absence is an error, not a skip: CI always has it."""
    assert SHARED_DATA.is_dir(), f"expected the shared data beside the repo at {SHARED_DATA}"
    return SHARED_DATA
