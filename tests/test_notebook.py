"""notebooks/inspect_runs.ipynb runs top to bottom against the tiny end-to-end run.

    .venv/bin/python -m pytest -q tests/test_notebook.py

The notebook reads the run through the Metaflow client (`azllm.runs.explore`); the test passes the
run id in `AZLLM_RUN_ID`, executes every cell with nbclient in a kernel of this interpreter,
and fails on the first cell error.
"""

from __future__ import annotations

from conftest import REPO_ROOT

NOTEBOOK = REPO_ROOT / "notebooks" / "inspect_runs.ipynb"


def test_notebook_runs_top_to_bottom(tiny_run, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    run, _ = tiny_run
    monkeypatch.setenv("AZLLM_RUN_ID", run.id)
    monkeypatch.setenv("AZLLM_FIGURE_DIR", str(tmp_path))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # Kernel subprocesses inherit os.environ: the run id and the tests' datastore.
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=False,
                   resources={"metadata": {"path": str(REPO_ROOT)}}).execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5, f"expected the notebook's figures, got {len(images)} images"
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert run.id in text, "the notebook did not pick the run given in AZLLM_RUN_ID"
    assert (tmp_path / "overview.png").stat().st_size > 10_000, "main figure not saved"
