"""The CUDA paths of CPT and evaluation, on a GPU host: `make test-gpu` (skipped elsewhere).

Checks what CPU tests cannot: the workers use nccl, bf16 and fused AdamW; Liger's kernels are
applied and give the same losses as plain HF layers (within 1% over 20 same-seed steps);
activation checkpointing and torch.compile change memory and speed, not the losses; the
meta-device build + weight broadcast gives the plain model's first loss; the pinned staging
buffer delivers batches intact; BPB scored on the GPU equals BPB scored on the CPU.
Tiny random Llama of tests/test_cpt.py, one or two GPUs; a few minutes on an H100.

    make test-gpu            # or: .venv/bin/python -m pytest -q -m gpu tests/test_gpu.py
"""

from __future__ import annotations

import pytest
import torch
from test_cpt import BLOCK_SIZE, _plain_first_loss, _weights, tiny_base  # noqa: F401 - tiny_base is a fixture

from azllm.config import CptConfig, PhaseConfig
from azllm.train.launcher import run_cpt_phase
from azllm.train.metrics import read_metrics_records

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible to torch)")]

STEPS = 20


def _nproc() -> int:
    return min(2, torch.cuda.device_count())


def _gpu_run(tiny_base, root, name: str, *, steps: int = STEPS, **options):  # noqa: F811
    train = PhaseConfig(lr=3e-3, max_steps=steps, micro_batch_size=2, warmup_steps=1, log_every_steps=1)
    cfg = CptConfig(block_size=BLOCK_SIZE, seed=7, full=train, **{"liger": False, **options})
    result = run_cpt_phase(cfg, phase="full", model_dir=tiny_base["tied"], blocks_path=tiny_base["blocks"],
                           out_dir=root / f"{name}-out", work_dir=root / name, nproc_per_node=_nproc())
    start = next(r for r in read_metrics_records(root / name / "metrics.jsonl") if r.get("event") == "start")
    return result, start


@pytest.fixture(scope="module")
def plain_bf16(tiny_base, tmp_path_factory):  # noqa: F811
    return _gpu_run(tiny_base, tmp_path_factory.mktemp("gpu"), "plain")


def _losses(result) -> list[float]:
    return [h["loss"] for h in result.metrics["history"]]


def test_workers_use_nccl_bf16_and_fused_adamw(plain_bf16):
    result, start = plain_bf16
    assert start["backend"] == "nccl" and start["device"].startswith("cuda")
    assert start["bf16"] is True, "bf16 autocast policy not used on a bf16-capable GPU"
    assert start["fused_adamw"] is True
    assert start["params_are_dtensors"]
    losses = _losses(result)
    assert len(losses) == STEPS and losses[-1] < losses[0], losses
    step = result.metrics["history"][-1]
    assert step["peak_mem_gib"] > 0
    from azllm.train.flops import peak_flops_for_name

    if peak_flops_for_name(torch.cuda.get_device_name(0)) is not None:
        assert step["mfu"] is not None and 0 < step["mfu"] < 1, step


def test_liger_is_applied_and_matches_plain_losses(tiny_base, plain_bf16, tmp_path):  # noqa: F811
    pytest.importorskip("liger_kernel")
    result, start = _gpu_run(tiny_base, tmp_path, "liger", liger=True)
    assert start["liger"] is True, "Liger was requested but not applied (see worker.log)"
    for step, (a, b) in enumerate(zip(_losses(result), _losses(plain_bf16[0]), strict=True), 1):
        assert a == pytest.approx(b, rel=1e-2), (step, a, b)


@pytest.mark.parametrize("options", [{"activation_checkpointing": "full"},
                                     {"activation_checkpointing": "selective"},
                                     {"compile": True}], ids=["ac-full", "ac-selective", "compile"])
def test_memory_options_keep_the_losses(tiny_base, plain_bf16, tmp_path, options):  # noqa: F811
    result, start = _gpu_run(tiny_base, tmp_path, "opt", **options)
    assert all(start[k] == v for k, v in options.items()), start
    tol = 1e-2 if options.get("compile") else 1e-3  # inductor fuses bf16 ops in another order
    for step, (a, b) in enumerate(zip(_losses(result), _losses(plain_bf16[0]), strict=True), 1):
        assert a == pytest.approx(b, rel=tol), (step, a, b)


def test_meta_build_and_broadcast_give_the_plain_model_on_gpu(tiny_base, tmp_path):  # noqa: F811
    if _nproc() != 2:
        pytest.skip("the reference loss averages the first batches of 2 ranks: needs 2 GPUs")
    result, _ = _gpu_run(tiny_base, tmp_path, "fp32", steps=2, mixed_precision="fp32")
    assert result.metrics["history"][0]["loss"] == pytest.approx(_plain_first_loss(tiny_base, "tied"), abs=1e-4)


def test_pinned_staging_buffer_delivers_batches_intact():
    from azllm.train.blocks import DeviceStager

    stage = DeviceStager(torch.device("cuda", 0))
    batches = [torch.randint(0, 1000, (4, 64)) for _ in range(3)]
    out = [stage(b) for b in batches]  # the buffer is reused: earlier outputs must not change
    torch.cuda.synchronize()
    assert stage._buffer is not None and stage._buffer.is_pinned()
    for b, o in zip(batches, out, strict=True):
        assert o.is_cuda and torch.equal(o.cpu(), b)


def test_bpb_on_the_gpu_equals_the_cpu(tiny_base, plain_bf16):  # noqa: F811
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from azllm.eval.bpb import evaluate_bpb

    model_dir = plain_bf16[0].model_dir
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = ["Azərbaycan Respublikasının paytaxtı Bakı şəhəridir.", "Xəzər dənizi dünyanın ən böyük gölüdür."] * 4
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    on_cpu = evaluate_bpb(model, tokenizer, texts)
    on_gpu = evaluate_bpb(model.to("cuda"), tokenizer, texts)
    assert on_gpu["tokens"] == on_cpu["tokens"] and on_gpu["bytes"] == on_cpu["bytes"]
    assert on_gpu["bpb"] == pytest.approx(on_cpu["bpb"], abs=1e-4)
