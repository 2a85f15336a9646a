"""The import layers of docs/DESIGN.md §2, as `.importlinter` states them and `make lint` checks them.

    .venv/bin/python -m pytest -q tests/test_layers.py

The real tree keeps every contract; a copy of `azllm/` with one upward import added
(evaluation importing training) breaks the layers contract, and the message names it;
a copy with a cycle inside one package breaks the acyclic contract.
Seconds: import-linter reads the source, it imports nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT

CONFIG = REPO_ROOT / ".importlinter"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the `azllm` package found under `root`, with the repository's contracts."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    cli = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(cli), "--config", str(CONFIG), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_tree_keeps_its_layers():
    result = lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _copy_with_import(tmp_path: Path, module: str, statement: str) -> Path:
    shutil.copytree(REPO_ROOT / "azllm", tmp_path / "azllm", ignore=shutil.ignore_patterns("__pycache__"))
    path = tmp_path / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text(encoding="utf-8") + f"\n{statement}  # noqa: E402\n", encoding="utf-8")
    return tmp_path


def test_an_upward_import_breaks_the_contract_and_is_named(tmp_path):
    result = lint_imports(_copy_with_import(tmp_path, "azllm.eval.bpb", "import azllm.train.sft"))
    assert result.returncode != 0, result.stdout
    assert "azllm.eval is not allowed to import azllm.train" in result.stdout, result.stdout
    assert "azllm.eval.bpb -> azllm.train.sft" in result.stdout, result.stdout


def test_a_cycle_inside_a_package_breaks_the_contract(tmp_path):
    result = lint_imports(_copy_with_import(tmp_path, "azllm.eval.loss", "import azllm.eval.report"))
    assert result.returncode != 0, result.stdout
    assert "No cycles are allowed in azllm.eval" in result.stdout, result.stdout
