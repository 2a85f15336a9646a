"""How many nodes and processes a training step launches, from the profile and ``@parallel``.

A CPT step with ``nodes > 1`` in its compute profile is entered with
``self.next(self.<step>, num_parallel=nodes)`` and carries ``@parallel``; Metaflow then
runs one task per node and tells each its place through ``current.parallel``. Each
node launches torchrun with the :class:`TorchrunLayout` from :func:`torchrun_layout`:

    layout = torchrun_layout(cfg.compute, "cpt_full")     # inside the step
    run_cpt_phase(..., **layout.as_kwargs())              # nproc_per_node, nnodes, node_rank, ...

Locally (``configs/compute/local-2nodes.toml``) the gang is two processes on this host
with one gloo worker each; on Kubernetes it is a JobSet, on AWS Batch a multi-node
parallel job, and the same code runs in both.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass

from azllm.compute.profile import load_compute_profile
from azllm.train.launcher import DEFAULT_MASTER_PORT, parallel_torchrun_args

LOCAL_PORT_RANGE = (20000, 40000)
"""Rendezvous ports for gangs whose nodes share this host: one per gang, from its control task."""


@dataclass(frozen=True, kw_only=True)
class TorchrunLayout:
    """torchrun's view of one node: the keyword arguments of ``torchrun_command``/``run_cpt_phase``."""

    nproc_per_node: int
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int | None = None
    """None on one node (``--standalone`` picks a port)."""

    def as_kwargs(self) -> dict:
        return asdict(self)

    @property
    def is_main_node(self) -> bool:
        """Node 0 exports the model and stores the step's artifacts that matter."""
        return self.node_rank == 0


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
    from azllm.compute.hardware import training_processes_per_node

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
    import os

    from metaflow import current

    control = os.environ.get("MF_PARALLEL_CONTROL_TASK_ID", "")
    run_id = getattr(current, "run_id", None) or ""
    return f"{run_id}/{step_name}/{control}"
