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

from azllm.train.checkpointing import KEPT_AFTER_PHASE, CheckpointStore, store_checkpoints, store_problems
from azllm.train.faults import KILL_ENV_VAR, TRAIN_ENV_VAR
from azllm.train.launcher import run_cpt_phase
from azllm.train.phase import TorchrunLayout, free_port
from conftest import REPO_ROOT, run_id_of

TRAIN = {"lr": 1e-2, "max_steps": 6, "micro_batch_size": 2, "warmup_steps": 1, "log_every_steps": 1}


def _run_gang(tiny_base, root: Path, nnodes: int, nproc_per_node: int, train: dict | None = None,  # noqa: F811
              *, expect_failure: bool = False, **kwargs):
    """Run one CPT phase as `nnodes` nodes (threads here, hosts in the cloud), each in its own work
    dir (no shared filesystem); node 0's result, or with ``expect_failure`` the nodes' errors."""
    port = free_port()
    train = train or TRAIN
    results, errors = {}, []

    def node(rank: int) -> None:
        try:
            layout = TorchrunLayout(nproc_per_node=nproc_per_node, nnodes=nnodes, node_rank=rank,
                                    master_addr="127.0.0.1", master_port=port)
            results[rank] = run_cpt_phase(_cpt("full", {"collective_timeout_s": 60}, **train), phase="full",
                                          model_dir=tiny_base["tied"],
                                          blocks_path=tiny_base["blocks"], out_dir=root / f"node{rank}-out",
                                          work_dir=root / f"node{rank}", layout=layout, **kwargs)
        except Exception as e:  # noqa: BLE001 - re-raised below with the node
            errors.append((rank, e))

    threads = [threading.Thread(target=node, args=(r,)) for r in range(nnodes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    if expect_failure:
        assert errors, "the gang was meant to fail"
        return errors
    assert not errors, errors
    return results[0]


@pytest.fixture(scope="module")
def one_node_two_procs(tiny_base, tmp_path_factory):  # noqa: F811
    return _run_gang(tiny_base, tmp_path_factory.mktemp("1x2"), nnodes=1, nproc_per_node=2)


@pytest.fixture(scope="module")
def two_nodes_one_proc(tiny_base, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("2x1")
    return _run_gang(tiny_base, root, nnodes=2, nproc_per_node=1), root


def test_two_nodes_one_process_each_match_one_node_two_processes(two_nodes_one_proc, one_node_two_procs):
    multi, tmp_path = two_nodes_one_proc
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


@pytest.fixture
def s3_store(moto_endpoint, monkeypatch, tmp_path):  # noqa: F811
    """A fresh bucket on the moto S3 server on localhost; the workers inherit the endpoint."""
    import boto3

    for key, value in {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    bucket = f"gang-{abs(hash(str(tmp_path))) % 10**8}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/AzLLMFlow/1/cpt_full/extend"


def test_nodes_without_a_shared_filesystem_resume_from_the_checkpoint_store(tiny_base, two_nodes_one_proc,  # noqa: F811
                                                                          tmp_path, s3_store, monkeypatch):
    """Issue 24: two nodes, each with its own checkpoint directory, S3 (moto) as the store. Node 1's
    worker is SIGKILLed once step 2's checkpoint is complete in the store and mid-way through
    uploading step 4's (its RNG file is there, its shard not). The retry resumes at step 3 from
    step 2 on both nodes, never from the incomplete step 4, and ends on the uninterrupted run's
    weights (2 nodes x 1 process run straight) within the one-node resume tolerance."""
    train = {**TRAIN, "save_every_steps": 2}
    monkeypatch.setenv(KILL_ENV_VAR, "cpt_full:4:1")
    errors = _run_gang(tiny_base, tmp_path, 2, 1, train, checkpoint_store=s3_store, expect_failure=True)
    assert {rank for rank, _ in errors} == {0, 1}, errors
    monkeypatch.delenv(KILL_ENV_VAR)
    assert "SIGKILL mid-way through the upload" in (tmp_path / "node1" / "worker.log").read_text()
    store = CheckpointStore(s3_store)
    found = store_checkpoints(store)
    assert not store_problems(store, 2, found[2]), "step 2 was complete in the store before the kill"
    assert "rng-rank00001.pt" in found[4] and "__1_0.distcp" not in found[4], found[4]
    assert store_problems(store, 4, found[4]), "a checkpoint missing a rank's shard passed as complete"
    assert not list((tmp_path / "node0" / "checkpoints").glob("step-*")), "nothing is complete on one disk"

    retry = _run_gang(tiny_base, tmp_path, 2, 1, train, checkpoint_store=s3_store)
    assert retry.metrics["resumed_at_steps"] == [3]
    for rank in (0, 1):
        log = (tmp_path / f"node{rank}" / "worker.log").read_text()
        assert f"skipping {s3_store}/step-000004" in log, rank
        assert f"{tmp_path / f'node{rank}' / 'checkpoints' / 'step-000002'} (step 2) is complete" in log, rank
    straight = two_nodes_one_proc[0]
    ref = straight.metrics["history"]
    assert [h["step"] for h in retry.metrics["history"]] == [h["step"] for h in ref] == list(range(1, 7))
    for a, b in zip(retry.metrics["history"], ref, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5), a["step"]
    ours, theirs = _weights(retry.model_dir), _weights(straight.model_dir)
    for name, t in theirs.items():
        torch.testing.assert_close(ours[name], t, rtol=1e-5, atol=1e-6, msg=name)
    # the phase finished: only the last checkpoint's meta.json and trainer.pt stay in the store
    assert sorted(store.listing()) == [f"step-000006/{n}" for n in sorted(KEPT_AFTER_PHASE)]


def test_hsdp_on_two_nodes_resumes_like_fsdp_on_one(tiny_base, tmp_path, s3_store):  # noqa: F811
    """2 nodes x 2 processes shard within a node and replicate across nodes (a 2-D mesh). Killed
    after step 2's checkpoint (in the store; DCP writes each replicated shard once, from one of
    its replicas, so each node's download brings the other node's files) and retried, the run
    equals 1 node x 4 processes run straight (a 1-D mesh over the same 4 data-parallel ranks):
    losses and final weights."""
    train = {**TRAIN, "max_steps": 3, "save_every_steps": 2}
    _run_gang(tiny_base, tmp_path / "hsdp", nnodes=2, nproc_per_node=2, train=train, checkpoint_store=s3_store,
              env={TRAIN_ENV_VAR: "cpt_full:2"}, expect_failure=True)
    hsdp = _run_gang(tiny_base, tmp_path / "hsdp", nnodes=2, nproc_per_node=2, train=train, checkpoint_store=s3_store)
    fsdp = _run_gang(tiny_base, tmp_path / "fsdp", nnodes=1, nproc_per_node=4, train=train)
    assert hsdp.metrics["resumed_at_steps"] == [3]
    meshes = {}
    for name in ("hsdp", "fsdp"):
        lines = (tmp_path / name / "node0" / "metrics.jsonl").read_text().splitlines()
        meshes[name] = next(r for r in map(json.loads, lines) if r.get("event") == "start")["mesh"]
    assert meshes == {"hsdp": {"replicate": 2, "shard": 2}, "fsdp": {"shard": 4}}
    assert hsdp.metrics["world_size"] == fsdp.metrics["world_size"] == 4
    diffs = [abs(a["loss"] - b["loss"]) for a, b in zip(hsdp.metrics["history"], fsdp.metrics["history"],
                                                           strict=True)]
    print(f"HSDP (resumed) vs FSDP max |loss diff| over {len(diffs)} steps: {max(diffs):.2e}")
    assert len(diffs) == 3 and max(diffs) < 1e-4, diffs
    ours, theirs = _weights(hsdp.model_dir), _weights(fsdp.model_dir)
    for name, t in theirs.items():
        torch.testing.assert_close(ours[name], t, rtol=1e-4, atol=1e-5, msg=name)


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
        from dataclasses import asdict

        from azllm.compute.distributed import checkpoint_stores, torchrun_layout
        from azllm.config import ComputeConfig, CptConfig, CptRuntime, PhaseConfig
        from azllm.train.launcher import run_cpt_phase

        layout = torchrun_layout(ComputeConfig(profile="local-2nodes", nproc_per_node=1), "cpt_full")
        cfg = CptConfig(block_size=BLOCK_SIZE, runtime=CptRuntime(liger=False, seed=7),
                        full=PhaseConfig(**TRAIN, save_every_steps=3))
        node = Path(self.out) / f"node{layout.node_rank}"
        self.stores = checkpoint_stores(layout, "train", self.arm)
        result = run_cpt_phase(cfg, phase="full", model_dir=Path(self.model_dir), blocks_path=Path(self.blocks),
                               out_dir=node / "model", work_dir=node / "work", layout=layout, **self.stores)
        self.layout = asdict(layout)
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
    # checkpoints went through the flow's own (local) datastore, and the finished phase kept only
    # the last one's meta.json and trainer.pt there
    stores = {task.data.stores["checkpoint_store"] for task in run["train"]}
    store = Path(stores.pop())
    assert not stores and store.parts[-5:] == ("azllm-checkpoints", "GangFlow", run.id, "train", "extend"), store
    assert sorted(p.name for p in store.rglob("*") if p.is_file()) == ["meta.json", "trainer.pt"]
    assert "staged checkpoint 3" in (tmp_path / "out" / "node0" / "work" / "worker.log").read_text()
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
