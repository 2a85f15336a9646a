"""Models on the step's hardware (issue 13, item 1): the device/dtype choice, loading through it,
and batched BPB equal to the one-window-at-a-time and one-document-at-a-time scores on real text.

A tiny random Llama on SmolLM2's real 49k tokenizer, four Azerbaijani news documents; about 20 s
on CPU. The `gpu` tests run only on a CUDA host (`pytest -m gpu`); elsewhere they skip with a reason.

    .venv/bin/python -m pytest -q tests/test_eval_device.py
"""

from __future__ import annotations

import pytest
import torch
from test_eval import OTHER_DOMAIN, reference_bpb

from azllm.config import ConfigError, EvalConfig
from azllm.eval.bpb import evaluate_bpb, evaluate_bpb_files, read_texts
from azllm.eval.generation import generate_samples
from azllm.eval.load import load_model_and_tokenizer
from azllm.model.device import Placement, autocast_for, placement_for_model_dtype, select_placement
from azllm.model.load import load_model

CUDA = torch.cuda.is_available()
needs_cpu_host = pytest.mark.skipif(CUDA, reason="checks the CPU branch; this host has CUDA")
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (torch.cuda.is_available() is False)")


@pytest.fixture(scope="module")
def smol_tiny(tmp_path_factory):
    """(model dir, tokenizer dir): a 2-layer random Llama over SmolLM2's own tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from azllm.tokenizer.load import load_tokenizer

    root = tmp_path_factory.mktemp("smol_tiny")
    tokenizer = load_tokenizer("smollm2-135m")
    tokenizer.save_pretrained(root)
    torch.manual_seed(3)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(root)
    return root, root


@pytest.fixture(scope="module")
def news():
    """Four real other-domain documents cut to 700 characters (about 280 SmolLM2 tokens each)."""
    return [t[:700] for t in read_texts(OTHER_DOMAIN)[:4]]


# -- the choice -----------------------------------------------------------------


@needs_cpu_host
def test_select_placement_on_cpu_is_float32_and_keeps_a_requested_dtype():
    assert select_placement() == Placement(device="cpu", dtype="float32")
    assert select_placement("bfloat16") == Placement(device="cpu", dtype="bfloat16")
    assert placement_for_model_dtype("float32") == select_placement()  # [model] dtype's default: the hardware
    assert placement_for_model_dtype("float16").dtype == "float16"
    with autocast_for(select_placement()):
        assert not torch.is_autocast_enabled("cuda")


def test_select_placement_rejects_an_unknown_dtype():
    with pytest.raises(ValueError, match=r"dtype='fp8'; accepted: \['float32', 'bfloat16', 'float16'\]"):
        select_placement("fp8")


def test_eval_batch_size_must_be_positive():
    assert EvalConfig().batch_size == 8
    with pytest.raises(ConfigError, match=r"\[eval\] batch_size must be >= 1"):
        EvalConfig(batch_size=0)


@needs_cpu_host
def test_loading_follows_the_placement(smol_tiny):
    model_dir, tokenizer_dir = smol_tiny
    model, _ = load_model_and_tokenizer(model_dir, tokenizer_dir)  # the hardware's choice: CPU, fp32
    assert model.device.type == "cpu" and model.dtype == torch.float32 and not model.training
    half = load_model(model_dir, placement=select_placement("bfloat16"))
    assert half.device.type == "cpu" and half.dtype == torch.bfloat16


# -- batched scoring equals today's ----------------------------------------------


def test_batched_bpb_equals_unbatched_and_reference_on_real_text(smol_tiny, news):
    model_dir, tokenizer_dir = smol_tiny
    model, tokenizer = load_model_and_tokenizer(model_dir, tokenizer_dir)
    # windows of 128 positions, new tokens every 64: padding in every batch, several windows per document
    one = evaluate_bpb(model, tokenizer, news, context_length=128, stride=64, batch_size=1, show_progress=False)
    eight = evaluate_bpb(model, tokenizer, news, context_length=128, stride=64, batch_size=8, show_progress=False)
    assert eight["tokens"] == one["tokens"] > 4 * 128 and eight["bytes"] == one["bytes"]
    assert abs(eight["bpb"] - one["bpb"]) < 1e-4, (eight["bpb"], one["bpb"])
    # whole documents in one window each, batched, against the definition computed one document at a time
    whole = evaluate_bpb(model, tokenizer, news, context_length=1024, batch_size=8, show_progress=False)
    expected = reference_bpb(model, tokenizer, news)
    assert abs(whole["bpb"] - expected) < 1e-4, (whole["bpb"], expected)


def test_bpb_files_load_through_the_placement(smol_tiny, news, tmp_path):
    import json

    model_dir, tokenizer_dir = smol_tiny
    path = tmp_path / "news.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in news[:3]), encoding="utf-8")
    model, tokenizer = load_model_and_tokenizer(model_dir, tokenizer_dir)
    direct = evaluate_bpb(model, tokenizer, news[:3], batch_size=2, show_progress=False)
    out = evaluate_bpb_files(model_dir, tokenizer_dir, {"news": path}, placement=select_placement(), batch_size=2,
                             show_progress=False)
    assert out["news"]["bpb"] == pytest.approx(direct["bpb"], abs=1e-6)


# -- on a GPU -----------------------------------------------------------------------


@pytest.mark.gpu
@needs_cuda
def test_gpu_bpb_in_bf16_agrees_with_cpu_fp32(smol_tiny, news):
    model_dir, tokenizer_dir = smol_tiny
    gpu = select_placement()
    assert gpu.device == "cuda" and gpu.dtype in ("bfloat16", "float16")
    model, tokenizer = load_model_and_tokenizer(model_dir, tokenizer_dir, placement=gpu)
    assert next(model.parameters()).device.type == "cuda" and model.dtype == gpu.torch_dtype
    on_gpu = evaluate_bpb(model, tokenizer, news, context_length=128, stride=64, show_progress=False)
    cpu_model, _ = load_model_and_tokenizer(model_dir, tokenizer_dir, placement=Placement("cpu", "float32"))
    on_cpu = evaluate_bpb(cpu_model, tokenizer, news, context_length=128, stride=64, show_progress=False)
    assert on_gpu["tokens"] == on_cpu["tokens"]
    assert on_gpu["bpb"] == pytest.approx(on_cpu["bpb"], rel=0.01)
    texts = generate_samples(model, tokenizer, ["Bakı"], max_new_tokens=4)  # inputs follow the model
    assert len(texts) == 1
