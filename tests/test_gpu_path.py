"""The CPU side of the GPU path's fixes (issue 20): the BPB window capped at the trained context on a
document longer than the cap; [model] attn_implementation reaching the CPT workers; SFT pinned to
one device without a distributed launcher; the device check asks no CUDA question in the step
process; Liger with torch.compile refused by the config. What only a GPU can show is in
tests/test_gpu.py. ~30 s.

    .venv/bin/python -m pytest -q tests/test_gpu_path.py
"""

from __future__ import annotations

import pytest
import torch
from test_sft import build_tiny_tokenizer

from azllm.config import ConfigError, CptConfig, CptRuntime
from azllm.eval.bpb import DEFAULT_CONTEXT_LENGTH, evaluate_bpb, read_texts


@pytest.fixture(scope="module")
def long_context_model(tmp_path_factory):
    """A tiny Llama that claims 131,072 positions (as Llama 3.2 does) and its tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("long")
    tokenizer = build_tiny_tokenizer(root / "tokenizer", num_lines=200)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=131072)
    return LlamaForCausalLM(cfg).eval(), tokenizer


def test_bpb_window_is_capped_at_the_trained_context(long_context_model, shared_data):
    model, tokenizer = long_context_model
    words = " ".join(read_texts(shared_data / "az_eval_other_domain.jsonl")[:20]).split()
    ids = tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]
    text = tokenizer.decode(ids[: int(1.2 * DEFAULT_CONTEXT_LENGTH)])  # a real document longer than the cap
    num_ids = 1 + len(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert num_ids > DEFAULT_CONTEXT_LENGTH, num_ids
    default = evaluate_bpb(model, tokenizer, [text], batch_size=2, show_progress=False)
    assert default["context_length"] == DEFAULT_CONTEXT_LENGTH < model.config.max_position_embeddings
    assert default["longest_window"] == DEFAULT_CONTEXT_LENGTH and default["tokens"] == num_ids - 1
    trained = evaluate_bpb(model, tokenizer, [text], context_length=256, batch_size=8, show_progress=False)
    assert trained["longest_window"] == 256 and trained["tokens"] == num_ids - 1


def test_sft_trains_on_one_device_unless_launched_distributed(tmp_path, monkeypatch):
    """transformers counts every visible GPU into ``n_gpu`` (DataParallel, refused by TRL); a 2-GPU
    host is stood for by setting the count the Trainer would have found."""
    from trl import SFTConfig

    from azllm.train.sft import pin_to_one_device

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    args = SFTConfig(output_dir=str(tmp_path), report_to="none", bf16=False)
    assert args.n_gpu == (1 if torch.cuda.is_available() else 0)
    args._n_gpu = 2
    pin_to_one_device(args)
    assert args.n_gpu == 1
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun: one process per GPU, n_gpu is 1 per process anyway
    args._n_gpu = 2
    pin_to_one_device(args)
    assert args.n_gpu == 2


def test_device_check_creates_no_cuda_context_here():
    from azllm.train.launcher import check_devices, gpu_report

    report = gpu_report()
    assert report["count"] == torch.cuda.device_count()
    check_devices("auto", 1)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='mixed_precision = "bf16" needs a CUDA GPU with native bf16'):
            check_devices("bf16", 1)
    assert not torch.cuda.is_initialized()


def test_liger_with_compile_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match=r"\[cpt.runtime\] liger = true with compile = true.*set compile = false"):
        CptConfig(runtime=CptRuntime(liger=True, compile=True))
    assert CptRuntime(liger=False, compile=True).compile and CptRuntime(liger=True, compile=False).liger


def test_attn_implementation_reaches_the_cpt_workers(long_context_model, tmp_path):
    """run_cpt_phase -> PhaseSpec -> the worker's meta-device build (tests/test_liger.py checks a
    worker's start record)."""
    from azllm.train.launcher import phase_spec
    from azllm.train.parallelize import build_meta_model
    from azllm.train.phase import PhaseSpec

    model, _ = long_context_model
    model.config.save_pretrained(tmp_path / "model")
    spec = phase_spec(CptConfig(), phase="full", model_dir=tmp_path / "model", blocks_path=tmp_path / "b.npy",
                      out_dir=tmp_path / "out", work_dir=tmp_path / "work", attn_implementation="eager")
    (tmp_path / "spec.json").write_text(spec.to_json(), encoding="utf-8")
    spec = PhaseSpec.from_json(tmp_path / "spec.json")
    assert spec.attn_implementation == "eager"
    built = build_meta_model(spec.model_dir, attn_implementation=spec.attn_implementation)
    assert built.config._attn_implementation == "eager"
