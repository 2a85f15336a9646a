"""Liger's Triton kernels on CPU under Triton's interpreter: per-parameter gradients against plain
PyTorch, alone and under full and selective activation checkpointing, for a tied head, an untied
head and a resized (padded) vocabulary; then the real CPT worker (FSDP2, 2 gloo ranks) with Liger
and selective AC against the same run without Liger.

Selective AC with Liger once gave q_proj gradients ~60% off with an unchanged loss (Liger's RoPE
rotates the saved k_proj output in place; azllm/train/parallelize.py). Each case also proves that
Liger's kernels ran (counted launches of its RoPE, RMSNorm, SwiGLU and cross-entropy kernels), so
a silent fall-back to plain PyTorch fails. The interpreter needs TRITON_INTERPRET=1 before Triton
is imported, so every Liger computation runs in a subprocess (tests/liger_interpreter.py). ~1.5 min.

    .venv/bin/python -m pytest -q tests/test_liger.py
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_cpt import BLOCK_SIZE, tiny_base  # noqa: F401 - tiny_base is a fixture

from azllm.config import CptConfig, CptRuntime, PhaseConfig
from azllm.train.launcher import run_cpt_phase
from azllm.train.metrics import read_metrics_records
from azllm.train.phase import TorchrunLayout

# Looked up, not imported: this process must not define Triton kernels (the subprocesses interpret them)
pytestmark = pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("liger_kernel", "triton")),
                                reason="needs liger_kernel and triton (requirements-cpu-test.txt)")

HERE = Path(__file__).resolve().parent
CASES = [f"{v}/{m}" for v in ("tied", "untied") for m in ("none", "full", "selective")] + ["padded/selective"]
LIGER_KERNELS = {"_triton_rope", "_rms_norm_forward_kernel", "_rms_norm_backward_kernel", "_swiglu_forward_kernel",
                 "_swiglu_backward_kernel", "liger_cross_entropy_kernel"}
FP32_TOL = 64 * torch.finfo(torch.float32).eps
"""Per-parameter |g_liger - g_plain| / |g_plain|: 64 fp32 ulps (7.6e-6). Fused kernels sum in another
order than PyTorch; on these 2-layer models the worst case measured 5e-7 (4 ulps). The selective-AC
bug gave 0.6."""


def interpreter_env(**extra: str) -> dict[str, str]:
    """This environment plus Triton's interpreter and the repository on PYTHONPATH."""
    path = os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": path, **extra}


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("liger") / "cases.json"
    proc = subprocess.run([sys.executable, str(HERE / "liger_interpreter.py"), str(out), *CASES],
                          env=interpreter_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("case", CASES)
def test_liger_gradients_match_plain_pytorch_per_parameter(cases, case):
    result = cases[case]
    assert result["liger_applied"], "apply_liger returned False under Triton's interpreter"
    missing = LIGER_KERNELS - set(result["launches"])
    assert not missing, f"Liger kernels never launched: {sorted(missing)} (launched: {result['launches']})"
    worst = max(result["rel_err"].items(), key=lambda kv: kv[1])
    bad = {n: e for n, e in result["rel_err"].items() if not e <= FP32_TOL}
    assert not bad, f"{case}: gradients off by more than {FP32_TOL:.1e} (norm-relative): {bad}"
    assert result["loss"] == pytest.approx(result["ref_loss"], rel=FP32_TOL), worst


def test_checkpointing_recomputes_through_liger(cases):
    """The AC cases really recompute: more RMSNorm forward launches than without AC."""
    for variant in ("tied", "untied"):
        plain = cases[f"{variant}/none"]["launches"]["_rms_norm_forward_kernel"]
        for mode in ("full", "selective"):
            assert cases[f"{variant}/{mode}"]["launches"]["_rms_norm_forward_kernel"] > plain, (variant, mode)


WORKER_TRAIN = {"lr": 3e-3, "max_steps": 3, "micro_batch_size": 1, "warmup_steps": 1, "log_every_steps": 3}
"""Step 1 is logged (the first), step 2's loss waits on the device until log step 3 reads both."""


def _plain_steps(tiny_base) -> list[tuple[float, float]]:  # noqa: F811
    """(loss, grad norm) of the worker's first 2 steps, by plain PyTorch in this process: rank r's batches
    from its BlockStream, gradients averaged over the 2 ranks as FSDP does. Warm-up makes step 1's
    lr 0, so both steps see the initial weights."""
    from transformers import AutoModelForCausalLM

    from azllm.train.blocks import BlockStream, load_training_blocks

    model = AutoModelForCausalLM.from_pretrained(tiny_base["tied"], dtype=torch.float32)
    blocks = load_training_blocks(tiny_base["blocks"])
    streams = [BlockStream(blocks, batch_size=1, rank=r, world_size=2, seed=7) for r in range(2)]
    out = []
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        losses = []
        for stream in streams:
            x = stream.next_batch()
            loss = model(input_ids=x, labels=x, use_cache=False).loss / 2
            loss.backward()
            losses.append(loss.item())
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
        out.append((sum(losses), norm.item()))
    return out


def test_worker_with_liger_and_selective_ac_matches_plain(tiny_base, tmp_path, monkeypatch):  # noqa: F811
    """FSDP2 over 2 gloo ranks, Liger (interpreted) and selective AC: each step's loss and gradient
    norm equal plain PyTorch's, and every rank launched Liger's kernels. Also: with
    log_every_steps = 3 every step is still recorded."""
    launches = tmp_path / "launches"
    for key, value in interpreter_env(AZLLM_TRITON_LAUNCHES=str(launches)).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE / "liger_site"), os.environ["PYTHONPATH"]]))
    cfg = CptConfig(block_size=BLOCK_SIZE, runtime=CptRuntime(seed=7, liger=True, activation_checkpointing="selective"),
                    full=PhaseConfig(**WORKER_TRAIN))
    result = run_cpt_phase(cfg, phase="full", model_dir=tiny_base["tied"], blocks_path=tiny_base["blocks"],
                           out_dir=tmp_path / "out", work_dir=tmp_path / "work",
                           layout=TorchrunLayout(nproc_per_node=2))
    start = next(r for r in read_metrics_records(tmp_path / "work" / "metrics.jsonl") if r.get("event") == "start")
    assert start["liger"] is True and start["activation_checkpointing"] == "selective", start
    assert start["attn_implementation"] == "sdpa", start
    for rank in (0, 1):
        counts = json.loads(Path(f"{launches}.rank{rank}").read_text())
        assert LIGER_KERNELS <= set(counts), f"rank {rank} launched {counts}"
    steps = result.metrics["history"]
    assert [h["step"] for h in steps] == [1, 2, 3], steps  # step 2 recorded without being a log step
    for h, (loss, grad_norm) in zip(steps[:2], _plain_steps(tiny_base), strict=True):
        assert h["grad_norm"] == pytest.approx(grad_norm, rel=FP32_TOL), (h, grad_norm)
        assert h["loss"] == pytest.approx(loss, rel=FP32_TOL), (h, loss)
