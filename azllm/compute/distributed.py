"""How many nodes and processes a training step launches, from the profile and ``@parallel``.

A CPT step with ``nodes > 1`` in its compute profile is entered with
``self.next(self.<step>, num_parallel=nodes)`` and carries ``@parallel``; Metaflow then
runs one task per node and tells each its place through ``current.parallel``. Each
node launches torchrun with the :class:`TorchrunLayout` from :func:`torchrun_layout`:

    layout = torchrun_layout(cfg.compute, "cpt_full")     # inside the step
    run_cpt_phase(..., layout=layout)                     # nproc_per_node, nnodes, node_rank, ...

Locally (``configs/compute/local-2nodes.toml``) the gang is two processes on this host
with one gloo worker each; on Kubernetes it is a JobSet, on AWS Batch a multi-node
parallel job, and the same code runs in both.
"""

from __future__ import annotations

import os
import zlib

from azllm.compute.profile import load_compute_profile
from azllm.train.launcher import training_processes_per_node
from azllm.train.phase import DEFAULT_MASTER_PORT, TorchrunLayout

__all__ = ["TorchrunLayout", "checkpoint_stores", "num_nodes", "parallel_torchrun_args", "rendezvous_port",
           "torchrun_layout"]

LOCAL_PORT_RANGE = (20000, 40000)
"""Rendezvous ports for gangs whose nodes share this host: one per gang, from its control task."""


def parallel_torchrun_args() -> dict:
    """``nnodes``, ``node_rank``, ``master_addr`` of this node in an ``@parallel`` step (:func:`torchrun_layout`).

    Read from Metaflow's ``current.parallel``; outside ``@parallel`` it falls back to the
    ``MF_PARALLEL_*`` environment (what ``@parallel`` sets), i.e. one node on 127.0.0.1.
    """
    try:
        from metaflow import current

        p = current.parallel
        nodes, node_index, main_ip = p.num_nodes, p.node_index, p.main_ip
    except (ImportError, AttributeError):
        nodes = int(os.environ.get("MF_PARALLEL_NUM_NODES", "1"))
        node_index = int(os.environ.get("MF_PARALLEL_NODE_INDEX", "0"))
        main_ip = os.environ.get("MF_PARALLEL_MAIN_IP", "127.0.0.1")
    return {"nnodes": int(nodes), "node_rank": int(node_index), "master_addr": str(main_ip)}


def num_nodes(compute_cfg, step_name: str) -> int:
    """``num_parallel`` for ``self.next(self.<step_name>, num_parallel=...)`` (``compute_cfg``: ``cfg.compute``)."""
    return load_compute_profile(compute_cfg.profile).for_step(step_name).nodes


def rendezvous_port(main_ip: str, gang_id: str) -> int:
    """The master port: 29500 across hosts; on one host a port derived from the gang (so
    concurrent local gangs, e.g. two arms, do not collide), the same on every node."""
    if main_ip not in ("127.0.0.1", "localhost"):
        return DEFAULT_MASTER_PORT
    low, high = LOCAL_PORT_RANGE
    return low + zlib.crc32(gang_id.encode()) % (high - low)


def torchrun_layout(compute_cfg, step_name: str) -> TorchrunLayout:
    """The layout of this node for ``step_name``: processes from the profile's GPUs (or
    ``compute.nproc_per_node`` on CPU), nodes and rank from ``current.parallel``."""
    step = load_compute_profile(compute_cfg.profile).for_step(step_name)
    nproc = training_processes_per_node(step.gpus_per_node, compute_cfg.nproc_per_node)
    gang = parallel_torchrun_args()
    if gang["nnodes"] == 1:
        return TorchrunLayout(nproc_per_node=nproc)
    if gang["nnodes"] != step.nodes:
        raise RuntimeError(f"step {step_name!r} runs on {gang['nnodes']} nodes but the compute profile "
                           f"{compute_cfg.profile!r} says nodes={step.nodes}; enter it with "
                           f"num_parallel=num_nodes(cfg.compute, {step_name!r})")
    return TorchrunLayout(nproc_per_node=nproc, nnodes=gang["nnodes"], node_rank=gang["node_rank"],
                          master_addr=gang["master_addr"],
                          master_port=rendezvous_port(gang["master_addr"], _gang_id(step_name)))


def _gang_id(step_name: str) -> str:
    """Same on every node of one gang: run, step and the control task's id."""
    from metaflow import current

    control = os.environ.get("MF_PARALLEL_CONTROL_TASK_ID", "")
    run_id = getattr(current, "run_id", None) or ""
    return f"{run_id}/{step_name}/{control}"


CHECKPOINT_PREFIX = "azllm-checkpoints"
"""Folder under the Metaflow datastore root holding multi-node CPT checkpoints, per flow/run/step/arm."""


def checkpoint_stores(layout: TorchrunLayout, step_name: str, arm: str) -> dict[str, str]:
    """``checkpoint_store`` and ``resume_store`` for ``run_cpt_phase`` in an ``@parallel`` step.

    One node: ``{}`` (checkpoints stay on its disk and go to Metaflow with ``@checkpoint``).
    Several nodes share no filesystem, so every rank uploads its files under the flow's own
    datastore root (S3 in the cloud; the local datastore when the gang runs on one machine):
    ``<root>/azllm-checkpoints/<flow>/<run>/<step>/<arm>``. A ``@retry`` attempt has the same run
    id and finds them; ``resume`` (a new run) also reads the run it resumes (``origin_run_id``).
    """
    if layout.nnodes == 1:
        return {}
    from metaflow import current
    from metaflow.datastore import FlowDataStore

    impl = FlowDataStore.default_storage_impl  # set by Metaflow's CLI in every task
    root = getattr(impl, "datastore_root", None)
    if impl is None or impl.TYPE not in ("s3", "local") or not root:
        raise RuntimeError(f"step {step_name!r} runs on {layout.nnodes} nodes, which keep their checkpoints in the "
                           "flow's datastore, but this run's datastore is "
                           f"{getattr(impl, 'TYPE', None)!r} at {root!r}; use --datastore=s3 (or local on one machine)")

    def url(run_id: str) -> str:
        return f"{str(root).rstrip('/')}/{CHECKPOINT_PREFIX}/{current.flow_name}/{run_id}/{step_name}/{arm}"

    stores = {"checkpoint_store": url(str(current.run_id))}
    origin = getattr(current, "origin_run_id", None)
    if origin:
        stores["resume_store"] = url(str(origin))
    return stores
