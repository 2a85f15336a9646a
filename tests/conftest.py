"""Shared fixtures. Run all tests with `make test` (or `.venv/bin/python -m pytest -q tests`).

Real data lives in ../shared/data beside the repository (never copied into it).
"""

from __future__ import annotations

import atexit
import os
import shutil
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
# Flow runs made by the tests go to a throwaway local datastore, not the repo's .metaflow; it is
# removed when the session ends (a suite writes ~10 GB of checkpoints and models into it).
if "METAFLOW_DATASTORE_SYSROOT_LOCAL" not in os.environ:
    _DATASTORE = tempfile.mkdtemp(prefix="azllm-mf-")
    os.environ["METAFLOW_DATASTORE_SYSROOT_LOCAL"] = _DATASTORE
    atexit.register(shutil.rmtree, _DATASTORE, ignore_errors=True)
os.environ.setdefault("METAFLOW_DEFAULT_DATASTORE", "local")
os.environ.setdefault("METAFLOW_DEFAULT_METADATA", "local")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skipped elsewhere (`make test-gpu` runs only these)")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data; its absence is an error, not a skip: CI always has it."""
    assert SHARED_DATA.is_dir(), f"expected the shared data beside the repo at {SHARED_DATA}"
    return SHARED_DATA


# ---------------------------------------------------------------------------
# One end-to-end run of the flow on the tiny preset, shared by every test that
# inspects a finished run (flow artifacts, cards, the notebook, `azllm chat`).
# ---------------------------------------------------------------------------

FLOW = REPO_ROOT / "flows" / "azllm_flow.py"
TINY_PRESET = REPO_ROOT / "configs" / "tiny.toml"


def run_flow(*args: str, env: dict[str, str] | None = None, timeout: int = 1500):
    """Run the flow as a user would; returns the CompletedProcess (output captured)."""
    import subprocess
    import sys

    # Metaflow's local runtime starts the extra nodes of an @parallel step with `python` from PATH
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    full_env = {**os.environ, "PATH": path, **(env or {})}
    return subprocess.run([sys.executable, str(FLOW), *args], cwd=REPO_ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def run_id_of(output: str) -> str:
    for line in output.splitlines():
        if "Workflow starting (run-id " in line:
            return line.split("run-id ")[1].split(")")[0]
    raise AssertionError(f"no run id in flow output:\n{output[-3000:]}")


def finished_run(proc, name: str = "AzLLMFlow"):
    """(metaflow.Run, combined output) of a flow process that must have succeeded."""
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-10000:]
    from metaflow import Run, namespace

    namespace(None)
    return Run(f"{name}/{run_id_of(output)}"), output


@pytest.fixture(scope="session")
def tiny_run():
    """(metaflow.Run, combined output) of a successful tiny-preset run, in the @project's production
    branch (`--production`), so `azllm export --run production` has a run to find."""
    return finished_run(run_flow("--production", "--config", "config", str(TINY_PRESET), "run"))


FAILED_RUN_BRANCH = "ci"
"""`--branch` of `failed_sft_run`: its runs are tagged `project_branch:test.ci`."""


@pytest.fixture(scope="session")
def failed_sft_run():
    """(run id, combined output) of a tiny-preset run failed on purpose in `sft_lora` (after CPT), in the
    test branch `test.ci`: the resume test resumes it, the export test exports its CPT model."""
    proc = run_flow("--branch", FAILED_RUN_BRANCH, "--config", "config", str(TINY_PRESET), "run",
                    env={"AZLLM_FAIL_AT_STEP": "sft_lora"})
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "failing step 'sft_lora' on purpose" in output, output[-10000:]
    return run_id_of(output), output


FAKE_SECRETS = {"HF_TOKEN": "hf_fakeTokenForLeakTest_8d1f0c2b9a",
                "AWS_SECRET_ACCESS_KEY": "fakeAwsSecretForLeakTest/7Q2x"}
"""Fake credentials in the environment of `cpt_failure_resumed` (tests/test_secrets.py looks for them)."""


@pytest.fixture(scope="session")
def cpt_failure_resumed(tmp_path_factory):
    """(resumed metaflow.Run, output of the failed run, output of `resume`): a one-arm tiny run whose CPT
    workers fail right after step 2's checkpoint (`AZLLM_FAIL_AFTER_TRAIN_STEP=cpt_full:2`), then resumed,
    with fake secrets in the environment of both. One pair of runs serves the mid-training resume test
    (tests/test_flow.py) and the leak search (tests/test_secrets.py)."""
    preset = tmp_path_factory.mktemp("one-arm") / "tiny-one-arm.toml"
    preset.write_text(f'inherit = "{TINY_PRESET}"\n[cpt]\narms = ["baseline"]\n')
    failed = run_flow("--config", "config", str(preset), "run",
                      env={**FAKE_SECRETS, "AZLLM_FAIL_AFTER_TRAIN_STEP": "cpt_full:2"})
    failed_output = failed.stdout + failed.stderr
    assert failed.returncode != 0, failed_output[-8000:]
    resumed = run_flow("resume", "--origin-run-id", run_id_of(failed_output), env=FAKE_SECRETS)
    run, resumed_output = finished_run(resumed)
    return run, failed_output, resumed_output


@pytest.fixture(scope="session")
def demo_run():
    """(metaflow.Run, combined output) of the quick start's run: the default preset (configs/demo.toml),
    no --config, in the user's branch. About 7-15 min on 2 cores: shared by test_demo and test_export."""
    return finished_run(run_flow("run", timeout=3600))


@pytest.fixture(scope="module")
def moto_endpoint():
    """An S3 server on localhost (moto), the only fake allowed: a stand-in for the cloud endpoint."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
