"""Multi-node CPT on one CPU host: 2 nodes x 1 gloo process each, against 1 node x 2 processes.

1. The launcher alone: two ``run_cpt_phase`` calls (node_rank 0 and 1, same master
   127.0.0.1:port) train a tiny random Llama with FSDP2; losses and weights match the
   same phase run as one node with two processes.
2. Through Metaflow: a small flow with a ``@parallel`` step inside a ``foreach``, entered
   with ``num_parallel`` from the ``local-2nodes`` compute profile; each node takes its
   torchrun layout from ``current.parallel`` (azllm.compute.distributed) and launches
   the same worker. This is the structure the CPT steps of AzLLMFlow use.

About a minute on 2 cores. Reuses the tiny model and blocks of tests/test_cpt.py.

    .venv/bin/python -m pytest -q tests/test_multinode.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from test_cpt import BLOCK_SIZE, _cpt, _weights, tiny_base  # noqa: F401 - tiny_base is a fixture

from azllm.train.launcher import free_port, run_cpt_phase
from conftest import REPO_ROOT, run_id_of

TRAIN = {"lr": 1e-2, "max_steps": 6, "micro_batch_size": 2, "warmup_steps": 1, "log_every_steps": 1}


def _run_gang(tiny_base, root: Path, nnodes: int, nproc_per_node: int, train: dict | None = None):  # noqa: F811
    """Run one CPT phase as `nnodes` nodes (threads here, hosts in the cloud); node 0's result."""
    port = free_port()
    train = train or TRAIN
    results, errors = {}, []

    def node(rank: int) -> None:
        try:
            results[rank] = run_cpt_phase(_cpt("full", **train), phase="full", model_dir=tiny_base["tied"],
                                          blocks_path=tiny_base["blocks"], out_dir=root / f"node{rank}-out",
                                          work_dir=root / f"node{rank}", nproc_per_node=nproc_per_node,
                                          nnodes=nnodes, node_rank=rank, master_addr="127.0.0.1",
                                          master_port=port)
        except Exception as e:  # noqa: BLE001 - re-raised below with the node
            errors.append((rank, e))

    threads = [threading.Thread(target=node, args=(r,)) for r in range(nnodes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    return results[0]


@pytest.fixture(scope="module")
def one_node_two_procs(tiny_base, tmp_path_factory):  # noqa: F811
    return _run_gang(tiny_base, tmp_path_factory.mktemp("1x2"), nnodes=1, nproc_per_node=2)


def test_two_nodes_one_process_each_match_one_node_two_processes(tiny_base, one_node_two_procs, tmp_path):  # noqa: F811
    multi = _run_gang(tiny_base, tmp_path, nnodes=2, nproc_per_node=1)
    m, ref = multi.metrics, one_node_two_procs.metrics
    assert m["world_size"] == 2 and m["params_are_dtensors"]
    assert m["steps"] == TRAIN["max_steps"] and m["final_loss"] < m["first_loss"], "did not train"
    assert "--nnodes=2" in (tmp_path / "node1" / "worker.log").read_text()
    assert not (tmp_path / "node1-out" / "config.json").exists(), "only node 0 exports the model"
    for a, b in zip(m["history"], ref["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4), a["step"]
    ours, theirs = _weights(multi.model_dir), _weights(one_node_two_procs.model_dir)
    for name, t in theirs.items():
        torch.testing.assert_close(ours[name], t, rtol=1e-4, atol=1e-5, msg=name)


def test_nodes_without_a_shared_checkpoint_dir_restart_together(tiny_base, one_node_two_procs, tmp_path):  # noqa: F811
    """Each node has its own work dir (no shared filesystem): node 0 never holds every shard of a
    checkpoint, so none is marked complete or registered, and the run says why. A rerun must not
    resume (dcp.load would fail on the missing shards): the gang starts at step 1 and trains the
    same steps again."""
    first = _run_gang(tiny_base, tmp_path, nnodes=2, nproc_per_node=1)
    log = (tmp_path / "node0" / "worker.log").read_text()
    assert "not shared by every node" in log and "saved checkpoint" not in log
    assert not list((tmp_path / "node0" / "checkpoints").glob("step-*")), "an incomplete checkpoint was kept"
    again = _run_gang(tiny_base, tmp_path, nnodes=2, nproc_per_node=1)
    assert again.metrics["resumed_at_steps"] == []
    starts = [json.loads(line) for line in (tmp_path / "node0" / "metrics.jsonl").read_text().splitlines()]
    assert [r["start_step"] for r in starts if r.get("event") == "start"] == [1, 1]
    for a, b in zip(again.metrics["history"], first.metrics["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4), a["step"]


def test_hsdp_on_two_nodes_matches_fsdp_on_one(tiny_base, tmp_path):  # noqa: F811
    """2 nodes x 2 processes shard within a node and replicate across nodes (a 2-D mesh); the
    losses equal 1 node x 4 processes (a 1-D mesh over the same 4 data-parallel ranks)."""
    train = {**TRAIN, "max_steps": 3}
    hsdp = _run_gang(tiny_base, tmp_path / "hsdp", nnodes=2, nproc_per_node=2, train=train)
    fsdp = _run_gang(tiny_base, tmp_path / "fsdp", nnodes=1, nproc_per_node=4, train=train)
    meshes = {}
    for name in ("hsdp", "fsdp"):
        lines = (tmp_path / name / "node0" / "metrics.jsonl").read_text().splitlines()
        meshes[name] = next(r for r in map(json.loads, lines) if r.get("event") == "start")["mesh"]
    assert meshes == {"hsdp": {"replicate": 2, "shard": 2}, "fsdp": {"shard": 4}}
    assert hsdp.metrics["world_size"] == fsdp.metrics["world_size"] == 4
    diffs = [abs(a["loss"] - b["loss"]) for a, b in zip(hsdp.metrics["history"], fsdp.metrics["history"],
                                                           strict=True)]
    print(f"HSDP vs FSDP max |loss diff| over {len(diffs)} steps: {max(diffs):.2e}")
    assert len(diffs) == 3 and max(diffs) < 1e-4, diffs


GANG_FLOW = '''
from pathlib import Path

from metaflow import FlowSpec, Parameter, parallel, step


class GangFlow(FlowSpec):
    """foreach arm -> start_arm -(num_parallel from the profile)-> @parallel train -> join -> join_arms."""

    model_dir = Parameter("model_dir")
    blocks = Parameter("blocks")
    out = Parameter("out")

    @step
    def start(self):
        self.arms = ["extend"]
        self.next(self.start_arm, foreach="arms")

    @step
    def start_arm(self):
        from azllm.compute.distributed import num_nodes
        from azllm.config import ComputeConfig

        self.arm = self.input
        self.cpt_nodes = num_nodes(ComputeConfig(profile="local-2nodes"), "cpt_full")
        self.next(self.train, num_parallel=self.cpt_nodes)

    @parallel
    @step
    def train(self):
        from azllm.compute.distributed import torchrun_layout
        from azllm.config import ComputeConfig, CptConfig, PhaseConfig
        from azllm.train.launcher import run_cpt_phase

        layout = torchrun_layout(ComputeConfig(profile="local-2nodes", nproc_per_node=1), "cpt_full")
        cfg = CptConfig(block_size=BLOCK_SIZE, liger=False, seed=7, full=PhaseConfig(**TRAIN))
        node = Path(self.out) / f"node{layout.node_rank}"
        result = run_cpt_phase(cfg, phase="full", model_dir=Path(self.model_dir), blocks_path=Path(self.blocks),
                               out_dir=node / "model", work_dir=node / "work", **layout.as_kwargs())
        self.layout = layout.as_kwargs()
        self.full_metrics = result.metrics if layout.is_main_node else None
        self.next(self.join)

    @step
    def join(self, inputs):
        self.layouts = sorted((inp.layout for inp in inputs), key=lambda lay: lay["node_rank"])
        self.full_metrics = next(inp.full_metrics for inp in inputs if inp.layout["node_rank"] == 0)
        self.arm = inputs[0].arm
        self.next(self.join_arms)

    @step
    def join_arms(self, inputs):
        self.results = {inp.arm: (inp.layouts, inp.full_metrics) for inp in inputs}
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    GangFlow()
'''


def test_parallel_step_inside_foreach_runs_two_nodes_through_metaflow(tiny_base, one_node_two_procs, tmp_path):  # noqa: F811
    flow = tmp_path / "gang_flow.py"
    flow.write_text(f"BLOCK_SIZE = {BLOCK_SIZE}\nTRAIN = {TRAIN!r}\n" + GANG_FLOW)
    # Metaflow's local runtime starts the other nodes with `python` from PATH: make it this venv's
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, str(flow), "run", "--model_dir", str(tiny_base["tied"]),
                           "--blocks", str(tiny_base["blocks"]), "--out", str(tmp_path / "out")],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    from metaflow import Run, namespace

    namespace(None)
    run = Run(f"GangFlow/{run_id_of(output)}")
    assert len(list(run["train"])) == 2, "expected one task per node"
    layouts, metrics = run["join_arms"].task.data.results["extend"]
    assert [lay["node_rank"] for lay in layouts] == [0, 1]
    assert {lay["nnodes"] for lay in layouts} == {2} and {lay["nproc_per_node"] for lay in layouts} == {1}
    assert layouts[0]["master_port"] == layouts[1]["master_port"]
    assert metrics["world_size"] == 2 and metrics["steps"] == TRAIN["max_steps"]
    for a, b in zip(metrics["history"], one_node_two_procs.metrics["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4), a["step"]


def test_azllm_flow_on_two_local_nodes_trains_the_same_arm_as_one_node(tiny_run):
    """The real flow with the `local-2nodes` compute profile (configs/tiny-2nodes.toml): each CPT
    phase of the `replace` arm runs as two @parallel tasks, 1 gloo process each, and matches the
    tiny run (1 node x 2 processes, same world size) step for step. About 2 min."""
    from conftest import REPO_ROOT as ROOT
    from conftest import run_flow

    proc = run_flow("--config", "config", str(ROOT / "configs" / "tiny-2nodes.toml"), "run")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-8000:]
    from metaflow import Run, namespace

    namespace(None)
    run = Run(f"AzLLMFlow/{run_id_of(output)}")
    for step_name in ("cpt_embeddings", "cpt_full"):
        assert len(list(run[step_name])) == 2, f"{step_name}: expected one task per node"
    data = run["end"].task.data
    layouts = data.cpt_layouts["replace"]
    assert [lay["node_rank"] for lay in layouts] == [0, 1] and {lay["nnodes"] for lay in layouts} == {2}
    one_node = tiny_run[0]["end"].task.data
    for phase in ("embeddings", "full"):
        got, want = data.cpt_metrics["replace"][phase], one_node.cpt_metrics["replace"][phase]
        assert got["world_size"] == want["world_size"] == 2
        assert [h["step"] for h in got["history"]] == [h["step"] for h in want["history"]]
        for a, b in zip(got["history"], want["history"], strict=True):
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-4), (phase, a["step"])
    assert data.arm_bpb["replace"]["validation"] == pytest.approx(one_node.arm_bpb["replace"]["validation"],
                                                                  rel=1e-4)
