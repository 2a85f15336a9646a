"""The CUDA paths of CPT, SFT and evaluation, on a GPU host: `make test-gpu` (skipped elsewhere).

Checks what CPU tests cannot, each able to fail: per-parameter gradients in bf16 against fp32 for
plain, Liger, Liger x {full, selective} AC and compile, no worse than plain PyTorch's own bf16 error;
Liger's kernels in a profiler trace; fused AdamW in the optimizer's param_groups; bf16 BPB against
fp32 on one model; native bf16 only; no CUDA context from the device check; SFT on one GPU without a
launcher; the embeddings phase, a checkpoint save + resume, a long document's BPB within memory;
the workers' nccl/bf16 setup and the meta-device build. Tiny random Llamas; a few minutes on an H100.

    make test-gpu            # or: .venv/bin/python -m pytest -q -m gpu tests/test_gpu.py
"""

from __future__ import annotations

import pytest
import torch
from test_cpt import BLOCK_SIZE, _plain_first_loss, _weights, tiny_base  # noqa: F401 - tiny_base is a fixture

from azllm.config import CptConfig, CptRuntime, PhaseConfig
from azllm.train.faults import TRAIN_ENV_VAR
from azllm.train.launcher import run_cpt_phase
from azllm.train.metrics import read_metrics_records
from azllm.train.phase import TorchrunLayout

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible to torch)")]

STEPS = 20


def _nproc() -> int:
    return min(2, torch.cuda.device_count())


def _gpu_run(tiny_base, root, name: str, *, steps: int = STEPS, phase: str = "full",  # noqa: F811
             model: str = "tied", fail_after_step: int | None = None, save_every_steps: int = 0, **runtime):
    train = PhaseConfig(lr=3e-3, max_steps=steps, micro_batch_size=2, warmup_steps=1, log_every_steps=1,
                        save_every_steps=save_every_steps)
    cfg = CptConfig(block_size=BLOCK_SIZE, runtime=CptRuntime(**{"seed": 7, "liger": False, **runtime}),
                    **{phase: train})
    result = run_cpt_phase(cfg, phase=phase, model_dir=tiny_base[model], blocks_path=tiny_base["blocks"],
                           out_dir=root / f"{name}-out", work_dir=root / name,
                           layout=TorchrunLayout(nproc_per_node=_nproc()),
                           env=None if fail_after_step is None else {TRAIN_ENV_VAR: f"cpt_{phase}:{fail_after_step}"})
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
    assert start["fused_adamw"] is True, "AdamW's param_groups do not all say fused=True"
    assert start["params_are_dtensors"]
    losses = _losses(result)
    assert len(losses) == STEPS and losses[-1] < losses[0], losses
    step = result.metrics["history"][-1]
    assert step["peak_mem_gib"] > 0.001, step  # CUDA's allocator, not the host RSS of the CPU path
    from azllm.train.flops import peak_flops_for_name

    if peak_flops_for_name(torch.cuda.get_device_name(0)) is not None:
        assert step["mfu"] is not None and 0 < step["mfu"] < 1, step


def test_liger_is_applied_and_matches_plain_losses(tiny_base, plain_bf16, tmp_path):  # noqa: F811
    """Through the worker (bf16, FSDP2, selective AC as the presets); the gradients themselves are
    checked by test_bf16_gradients_against_fp32 below."""
    pytest.importorskip("liger_kernel")
    result, start = _gpu_run(tiny_base, tmp_path, "liger", liger=True, activation_checkpointing="selective")
    assert start["liger"] is True, "Liger was requested but not applied (see worker.log)"
    for step, (a, b) in enumerate(zip(_losses(result), _losses(plain_bf16[0]), strict=True), 1):
        assert a == pytest.approx(b, rel=1e-2), (step, a, b)


# ---------------------------------------------------------------------------
# Gradients in bf16 against fp32, in one process on cuda:0
# ---------------------------------------------------------------------------

BF16_EPS = torch.finfo(torch.bfloat16).eps  # 2**-7


def _grad_model(*, liger: bool, ac: str, compile_layers: bool, dtype, vocab: int = 4096):
    """A 4-layer GQA Llama (hidden 256), seed 0, on cuda:0 in `dtype`; Liger, AC and compile applied
    as the CPT worker does (apply_liger, apply_activation_checkpointing, apply_compile)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from azllm.model.kernels import apply_liger
    from azllm.train.parallelize import apply_activation_checkpointing, apply_compile

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                      num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=1024,
                      tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).to("cuda", dtype)
    applied = apply_liger(model, enabled=liger)
    assert applied == liger
    apply_activation_checkpointing(model, ac, liger=applied)
    if compile_layers:
        apply_compile(model)
    return model, applied


def _grads(model, applied: bool, x) -> dict[str, torch.Tensor]:
    from azllm.model.kernels import liger_loss_kwargs

    model.zero_grad(set_to_none=True)
    model(input_ids=x, labels=x, use_cache=False, **liger_loss_kwargs(applied)).loss.backward()
    return {n.replace("._checkpoint_wrapped_module", "").replace("._orig_mod", ""): p.grad.float()
            for n, p in model.named_parameters()}


GRAD_CASES = {  # name: (liger, ac, compile); the plain case first: Liger's RoPE patch is global
    "compile": (False, "none", True), "liger": (True, "none", False), "liger-ac-full": (True, "full", False),
    "liger-ac-selective": (True, "selective", False), "liger-compile": (True, "none", True),
    "liger-ac-selective-compile": (True, "selective", True),
}


@pytest.fixture(scope="module")
def fp32_and_plain_bf16_grads():
    """Reference fp32 gradients (plain PyTorch, computed first: Liger's RoPE patch is global) and
    plain bf16's per-parameter error against them."""
    pytest.importorskip("liger_kernel")
    x = torch.randint(0, 4096, (2, 512), generator=torch.Generator().manual_seed(1)).cuda()
    ref = _grads(_grad_model(liger=False, ac="none", compile_layers=False, dtype=torch.float32)[0], False, x)
    plain = _grads(_grad_model(liger=False, ac="none", compile_layers=False, dtype=torch.bfloat16)[0], False, x)
    plain_err = {n: float((plain[n] - g).norm() / g.norm()) for n, g in ref.items()}
    return x, ref, plain_err


@pytest.mark.parametrize("case", list(GRAD_CASES))
def test_bf16_gradients_against_fp32(fp32_and_plain_bf16_grads, case):
    """Per parameter, |g_bf16 - g_fp32| / |g_fp32| of the case is at most 2x plain PyTorch's own
    bf16 error (same model, same batch) plus 2 bf16 ulps (2**-6): the fused kernels round in
    other places than PyTorch, not more; the selective-AC bug gave 60% on q_proj. No absolute
    cap: plain bf16's own error is the yardstick, whatever it is for a parameter. The embedding
    (the tied LM head) also checks the fused loss's fp32 accumulation. A compile case that cannot
    compile Liger's kernels fails here; [cpt] refuses liger + compile until it passes."""
    x, ref, plain_err = fp32_and_plain_bf16_grads
    liger, ac, compile_layers = GRAD_CASES[case]
    model, applied = _grad_model(liger=liger, ac=ac, compile_layers=compile_layers, dtype=torch.bfloat16)
    grads = _grads(model, applied, x)
    bad = {}
    for name, g in ref.items():
        err = float((grads[name] - g).norm() / g.norm())
        if not err <= 2 * plain_err[name] + 2 * BF16_EPS:
            bad[name] = (round(err, 5), round(plain_err[name], 5))
    assert not bad, f"{case}: per-parameter bf16 error (case, plain) above tolerance: {bad}"


def test_liger_kernels_are_in_the_profiler_trace():
    """Liger's Triton kernels by name in a torch.profiler trace of one training step (none without)."""
    pytest.importorskip("liger_kernel")
    from torch.profiler import ProfilerActivity, profile

    def kernel_names(liger: bool) -> set[str]:
        model, applied = _grad_model(liger=liger, ac="selective", compile_layers=False, dtype=torch.bfloat16)
        x = torch.randint(0, 4096, (2, 256), device="cuda")
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            _grads(model, applied, x)
            torch.cuda.synchronize()
        return {e.key for e in prof.key_averages()}

    plain = kernel_names(False)
    liger = kernel_names(True)
    wanted = ("_rms_norm_forward_kernel", "_triton_rope", "_swiglu_forward_kernel", "liger_cross_entropy_kernel")
    missing = [w for w in wanted if not any(w in k for k in liger)]
    assert not missing, f"Liger kernels absent from the trace: {missing}; kernels seen: {sorted(liger)[:40]}"
    assert not any("_rms_norm_forward_kernel" in k for k in plain)


def test_liger_lowers_peak_memory_at_a_128k_vocabulary():
    """Vocab 128,256: the fused loss never materialises the (B, T, V) logits, so a step's peak is lower."""
    pytest.importorskip("liger_kernel")

    def peak(liger: bool) -> int:
        model, applied = _grad_model(liger=liger, ac="none", compile_layers=False, dtype=torch.bfloat16,
                                     vocab=128256)
        x = torch.randint(0, 128256, (2, 1024), device="cuda")
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        _grads(model, applied, x)
        torch.cuda.synchronize()
        out = torch.cuda.max_memory_allocated()
        del model
        torch.cuda.empty_cache()
        return out

    plain, liger = peak(False), peak(True)
    logits_bytes = 2 * 1024 * 128256 * 2  # one bf16 copy of the logits
    assert liger < plain - logits_bytes, (plain / 2**30, liger / 2**30)


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


def test_embeddings_phase_on_gpu_trains_only_embeddings(tiny_base, tmp_path):  # noqa: F811
    result, start = _gpu_run(tiny_base, tmp_path, "emb", steps=4, phase="embeddings", model="untied")
    assert start["bf16"] is True and set(start["trainable"]) == {"model.embed_tokens.weight", "lm_head.weight"}
    before, after = _weights(tiny_base["untied"]), _weights(result.model_dir)
    for name, w in before.items():
        changed = not torch.equal(w, after[name])
        assert changed == (name in start["trainable"]), name


def test_cuda_checkpoint_resumes_where_it_stopped(tiny_base, tmp_path):  # noqa: F811
    """fp32 on the GPU: an interrupted run (failed after step 3's checkpoint) resumed to step 6
    gives the uninterrupted run's losses (1e-5 relative: CUDA's atomics reorder a few sums)."""
    from azllm.train.launcher import WorkerError

    straight, _ = _gpu_run(tiny_base, tmp_path, "straight", steps=6, save_every_steps=3, mixed_precision="fp32")
    with pytest.raises(WorkerError):
        _gpu_run(tiny_base, tmp_path, "resumed", steps=6, save_every_steps=3, mixed_precision="fp32",
                 fail_after_step=3)
    resumed, _ = _gpu_run(tiny_base, tmp_path, "resumed", steps=6, save_every_steps=3, mixed_precision="fp32")
    assert result_steps(resumed)[-1] == 6 and resumed.metrics["resumed_at_steps"] == [4]
    for a, b in zip(_losses(resumed)[-3:], _losses(straight)[-3:], strict=True):
        assert a == pytest.approx(b, rel=1e-5)


def result_steps(result) -> list[int]:
    return [h["step"] for h in result.metrics["history"]]


def test_bf16_bpb_against_fp32_on_the_same_model(tiny_base, plain_bf16):  # noqa: F811
    """Evaluation scores in bf16 on a GPU (select_placement) and the arms are chosen by BPB: bf16 BPB
    is within 0.5% of fp32's on the same trained model. Arms closer than that should be rescored in
    fp32 before a choice (docs/DESIGN.md §9)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from azllm.eval.bpb import evaluate_bpb

    model_dir = plain_bf16[0].model_dir
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = ["Azərbaycan Respublikasının paytaxtı Bakı şəhəridir.", "Xəzər dənizi dünyanın ən böyük gölüdür."] * 4
    fp32 = evaluate_bpb(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).cuda(), tokenizer, texts)
    bf16 = evaluate_bpb(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).cuda(), tokenizer,
                        texts)
    assert bf16["tokens"] == fp32["tokens"]
    assert bf16["bpb"] == pytest.approx(fp32["bpb"], rel=5e-3), (bf16["bpb"], fp32["bpb"])


def test_long_document_bpb_stays_within_memory():
    """A 40,000-token document, vocab 128,256, a model claiming 131,072 positions: the window is capped
    (2,048), so the peak is bounded by MAX_BATCH_TOKENS rows of logits, not by the document (one
    window would need ~10 x 40,000 x 128,256 bytes = 51 GB)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from azllm.eval.bpb import MAX_BATCH_TOKENS, evaluate_bpb

    vocab = 128256
    words = Tokenizer(models.WordLevel({f"w{i}": i for i in range(vocab)}, unk_token="w0"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=words, bos_token="w1", eos_token="w2")
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=131072)
    model = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16).eval()
    g = torch.Generator().manual_seed(0)
    text = " ".join(f"w{i}" for i in torch.randint(3, vocab, (40000,), generator=g).tolist())
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        result = evaluate_bpb(model, tok, [text], batch_size=8, show_progress=False)
    assert result["context_length"] == 2048 and result["tokens"] == 40000
    bound = 12 * MAX_BATCH_TOKENS * vocab + 2**30
    assert torch.cuda.max_memory_allocated() < bound, (torch.cuda.max_memory_allocated() / 2**30, bound / 2**30)


def test_placement_uses_native_bf16_only():
    from azllm.model.device import select_placement

    native = torch.cuda.get_device_capability() >= (8, 0)
    assert select_placement().dtype == ("bfloat16" if native else "float16")


def test_device_check_leaves_cuda_uninitialised():
    """check_devices asks its CUDA questions in a child process: the step process holds no context."""
    import subprocess
    import sys

    code = ("import torch; from azllm.train.launcher import check_devices; check_devices('auto', 1); "
            "assert not torch.cuda.is_initialized(), 'check_devices created a CUDA context'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_sft_on_gpu_without_a_launcher(tmp_path, monkeypatch):
    """LoRA SFT on the GPU through run_sft, every GPU visible and no torchrun: one device, loss falls."""
    from test_sft import SFT_DIR, build_tiny_llama, build_tiny_tokenizer

    from azllm.config import LoraConfig, SftConfig
    from azllm.data.layout import PreparedData
    from azllm.train.sft import run_sft

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    tokenizer = build_tiny_tokenizer(tmp_path / "tokenizer")
    build_tiny_llama(tmp_path / "model", len(tokenizer))
    tokenizer.save_pretrained(tmp_path / "model")  # a model directory holds its tokenizer
    data = PreparedData(data_dir=tmp_path)
    lines = (SFT_DIR / "train.jsonl").read_text(encoding="utf-8").splitlines()
    data.sft_train.write_text("\n".join(lines[:8]) + "\n", encoding="utf-8")
    data.sft_validation.write_text("\n".join(lines[8:12]) + "\n", encoding="utf-8")
    cfg = SftConfig(max_steps=4, max_length=256, lr=1e-2, micro_batch_size=4, lora=LoraConfig(rank=4, alpha=8.0))
    result = run_sft(cfg, model_dir=tmp_path / "model", data=data, out_dir=tmp_path / "out")
    assert result.metrics["eval_assistant_loss_after"] < result.metrics["eval_assistant_loss_before"]


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
