"""torchrun command builder, port picking, worker streaming and the Metaflow helpers.

Run: .venv/bin/python -m pytest -q tests/test_launcher.py  (no torch workers; < 1 s)
"""

from __future__ import annotations

import shutil
import socket
import sys

import pytest

from azllm.compute.distributed import parallel_torchrun_args
from azllm.train.checkpointing import (
    accept_loaded_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    missing_files,
    register_with_metaflow,
    restore_checkpoint,
    save_checkpoint,
)
from azllm.train.launcher import WorkerError, run_torchrun, torchrun_command
from azllm.train.phase import TorchrunLayout, free_port


def test_single_node_is_standalone():
    cmd = torchrun_command("azllm.train.cpt_worker", ["--spec", "s.json"],
                           TorchrunLayout(nproc_per_node=2, master_port=1234))
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--standalone" in cmd and "--nnodes=1" in cmd and "--nproc_per_node=2" in cmd
    assert not any(a.startswith(("--master_port", "--master_addr", "--node_rank")) for a in cmd)
    assert cmd[-4:] == ["-m", "azllm.train.cpt_worker", "--spec", "s.json"]


def test_multi_node_flags():
    cmd = torchrun_command("azllm.train.cpt_worker", ["--spec", "s.json"],
                           TorchrunLayout(nproc_per_node=8, nnodes=4, node_rank=2, master_addr="10.0.0.5",
                                          master_port=29600))
    assert "--standalone" not in cmd
    for flag in ("--nnodes=4", "--node_rank=2", "--master_addr=10.0.0.5", "--master_port=29600",
                 "--nproc_per_node=8"):
        assert flag in cmd
    # worker module and its args come after every torchrun flag
    assert cmd.index("-m", 3) > max(cmd.index(f) for f in ("--nnodes=4", "--nproc_per_node=8"))
    default_port = torchrun_command("m", [], TorchrunLayout(nproc_per_node=1, nnodes=2, node_rank=1, master_addr="h"))
    assert "--master_port=29500" in default_port


@pytest.mark.parametrize("kwargs", [{"nproc_per_node": 0}, {"nproc_per_node": 1, "nnodes": 2, "node_rank": 2}])
def test_bad_topology(kwargs):
    with pytest.raises(ValueError, match="must be|node_rank"):
        TorchrunLayout(**kwargs)


def test_free_port_is_bindable():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_parallel_args_from_env(monkeypatch):
    assert parallel_torchrun_args() == {"nnodes": 1, "node_rank": 0, "master_addr": "127.0.0.1"}
    monkeypatch.setenv("MF_PARALLEL_NUM_NODES", "3")
    monkeypatch.setenv("MF_PARALLEL_NODE_INDEX", "1")
    monkeypatch.setenv("MF_PARALLEL_MAIN_IP", "10.1.2.3")
    args = parallel_torchrun_args()
    assert args == {"nnodes": 3, "node_rank": 1, "master_addr": "10.1.2.3"}
    cmd = torchrun_command("m", [], TorchrunLayout(nproc_per_node=8, **args))
    assert "--node_rank=1" in cmd and "--master_addr=10.1.2.3" in cmd


def test_run_torchrun_streams_and_raises_with_tail(tmp_path, capsys):
    log = tmp_path / "w.log"
    run_torchrun([sys.executable, "-c", "print('hello from worker')"], log)
    assert "hello from worker" in capsys.readouterr().out
    assert "hello from worker" in log.read_text()
    bad = [sys.executable, "-c", "import sys; print('boom-line'); sys.exit(3)"]
    with pytest.raises(WorkerError, match=r"(?s)code 3.*boom-line"):
        run_torchrun(bad, log)


def test_lineage_guard():
    assert accept_loaded_checkpoint({"run_id": "12"}, run_id="12", origin_run_id=None)
    assert accept_loaded_checkpoint({"pathspec": "AzFlow/7/cpt_full/3"}, run_id="12", origin_run_id="7")
    assert not accept_loaded_checkpoint({"run_id": "5"}, run_id="12", origin_run_id="7")
    assert not accept_loaded_checkpoint({"run_id": "5"}, run_id="12", origin_run_id=None)
    assert not accept_loaded_checkpoint({}, run_id="12", origin_run_id=None)


def test_register_with_metaflow_is_noop_outside_a_task(tmp_path, monkeypatch):
    monkeypatch.delenv("METAFLOW_CHECKPOINT_UID", raising=False)
    assert register_with_metaflow(tmp_path) is None


def _tiny_checkpoint(root, step: int):
    """A real, complete checkpoint of a one-process job (no process group: DCP writes locally)."""
    import torch

    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    return save_checkpoint(root, step, model=model, optimizer=optimizer, trainer_state={"data": {}})


def test_restore_checkpoint_from_metaflow_directory(tmp_path):
    """Metaflow hands back the checkpoint's contents; they go back under step-XXXXXX."""
    saved = _tiny_checkpoint(tmp_path / "saved", 12)
    assert saved is not None and missing_files(saved) == []
    loaded = tmp_path / "metaflow_checkpoint_abc"
    shutil.copytree(saved, loaded)
    (tmp_path / "ckpt" / ".tmp-step-000015").mkdir(parents=True)  # half-written: ignored
    target = restore_checkpoint(loaded, tmp_path / "ckpt")
    assert target.name == "step-000012" and (target / "trainer.pt").is_file()
    assert latest_checkpoint(tmp_path / "ckpt") == target
    (tmp_path / "junk").mkdir()
    with pytest.raises(FileNotFoundError, match="meta.json"):
        restore_checkpoint(tmp_path / "junk", tmp_path / "ckpt")
    next(loaded.glob("*.distcp")).unlink()  # a shard lost: never restored
    with pytest.raises(FileNotFoundError, match="incomplete"):
        restore_checkpoint(loaded, tmp_path / "other")


def test_an_incomplete_checkpoint_is_never_listed(tmp_path):
    first, second = _tiny_checkpoint(tmp_path, 3), _tiny_checkpoint(tmp_path, 6)
    assert list_checkpoints(tmp_path) == [first, second]
    (second / "rng-rank00000.pt").unlink()
    assert missing_files(second) == ["rng-rank00000.pt"]
    assert latest_checkpoint(tmp_path) == first


@pytest.mark.parametrize("name, peak", [("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12),
                                        ("NVIDIA H100 NVL", 835e12), ("NVIDIA H200", 989e12),
                                        ("NVIDIA A100-SXM4-40GB", 312e12), ("NVIDIA A100-PCIE-40GB", 312e12),
                                        ("NVIDIA A10G", 125e12), ("Tesla T4", None)])
def test_peak_flops_tells_sxm_from_pcie(name, peak):
    from azllm.train.flops import peak_flops_for_name

    assert peak_flops_for_name(name) == peak


@pytest.mark.parametrize("tied", [True, False])
def test_flops_count_what_each_phase_computes(tied):
    """Full phase: 6 N_mm + 12 L T H. Embeddings phase: weight gradients for the head only."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from azllm.train.flops import flops_per_token, matmul_params
    from azllm.train.parallelize import freeze_for_phase

    cfg = LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied)
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    total = sum(p.numel() for p in model.parameters())
    n_mm = total if tied else total - 256 * 32  # the input table is a lookup, the head a matmul
    freeze_for_phase(model, "full")
    assert matmul_params(model) == (n_mm, n_mm)
    assert flops_per_token(*matmul_params(model), num_layers=2, seq_len=64, hidden=32) == 6 * n_mm + 12 * 2 * 64 * 32
    freeze_for_phase(model, "embeddings")
    assert matmul_params(model) == (n_mm, 256 * 32)
