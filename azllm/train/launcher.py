"""Launch torchrun workers from a Metaflow step (or any process) and stream their output.

The flow step builds a command with :func:`torchrun_command`, runs it with
:func:`run_torchrun`, and the workers never know they are inside a flow. One node
uses ``--standalone`` (torchrun picks a free rendezvous port itself); several nodes
(``@parallel``) take ``--nnodes/--node_rank/--master_addr/--master_port`` from
:func:`parallel_torchrun_args`.

    >>> cmd = torchrun_command("azllm.train.cpt", ["--spec", "spec.json"], nproc_per_node=2)
    >>> run_torchrun(cmd, "worker.log")
"""

from __future__ import annotations

import collections
import os
import socket
import subprocess
import sys
from pathlib import Path

DEFAULT_MASTER_PORT = 29500
"""Rendezvous port on the main node for multi-node runs (torchrun's own default)."""


class WorkerError(RuntimeError):
    """torchrun workers exited non-zero; the message carries the tail of their log."""


def torchrun_command(module: str, args: list[str], *, nproc_per_node: int, nnodes: int = 1,
                     node_rank: int = 0, master_addr: str = "127.0.0.1",
                     master_port: int | None = None) -> list[str]:
    """``python -m torch.distributed.run ... -m MODULE ARGS`` for this interpreter.

    One node: ``--standalone`` (``master_port`` is not needed and ignored). Several nodes:
    static rendezvous on ``master_addr:master_port`` (default 29500), same on every node.
    """
    if nproc_per_node < 1:
        raise ValueError(f"nproc_per_node must be >= 1, got {nproc_per_node}")
    if nnodes < 1 or not 0 <= node_rank < nnodes:
        raise ValueError(f"need nnodes >= 1 and 0 <= node_rank < nnodes, got nnodes={nnodes} node_rank={node_rank}")
    cmd = [sys.executable, "-m", "torch.distributed.run"]
    if nnodes == 1:
        cmd += ["--standalone", "--nnodes=1"]
    else:
        port = DEFAULT_MASTER_PORT if master_port is None else master_port
        cmd += [f"--nnodes={nnodes}", f"--node_rank={node_rank}",
                f"--master_addr={master_addr}", f"--master_port={port}"]
    cmd += [f"--nproc_per_node={nproc_per_node}", "-m", module, *args]
    return cmd


def free_port() -> int:
    """A TCP port free right now on this host (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parallel_torchrun_args() -> dict:
    """``nnodes``, ``node_rank``, ``master_addr`` for :func:`torchrun_command` in an ``@parallel`` step.

    Read from Metaflow's ``current.parallel``; outside ``@parallel`` it falls back to the
    ``MF_PARALLEL_*`` environment (what ``@parallel`` sets), i.e. one node on 127.0.0.1.
    """
    try:
        from metaflow import current

        p = current.parallel
        num_nodes, node_index, main_ip = p.num_nodes, p.node_index, p.main_ip
    except (ImportError, AttributeError):
        num_nodes = int(os.environ.get("MF_PARALLEL_NUM_NODES", "1"))
        node_index = int(os.environ.get("MF_PARALLEL_NODE_INDEX", "0"))
        main_ip = os.environ.get("MF_PARALLEL_MAIN_IP", "127.0.0.1")
    return {"nnodes": int(num_nodes), "node_rank": int(node_index), "master_addr": str(main_ip)}


def run_torchrun(cmd: list[str], log_path: str | Path, env: dict[str, str] | None = None,
                 tail_lines: int = 60) -> None:
    """Run ``cmd``, echo every line to stdout and ``log_path``; raise :class:`WorkerError` on failure.

    ``env`` is added to (not substituted for) this process's environment, so workers
    inherit Metaflow's variables (e.g. ``METAFLOW_CHECKPOINT_UID``).
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env,
                                text=True, errors="replace", bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
            tail.append(line)
        rc = proc.wait()
        sys.stdout.flush()
    if rc != 0:
        raise WorkerError(f"torchrun exited with code {rc} (full log: {log_path}); last lines:\n"
                          + "".join(tail))
