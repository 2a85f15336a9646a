"""Model directories: SmolLM2 converted from its GGUF once and cached, tiny random
Llamas from a ModelConfig, local dirs, clear errors for unknown names, atomic caches;
apply_liger is a no-op on CPU.

The SmolLM2 test converts the GGUF on first run (~20-40 s on 2 CPU cores) into the
suite cache (AZLLM_CACHE, set in conftest.py); later runs reload it in well under 1 s.

    .venv/bin/python -m pytest -q -s tests/test_model_load.py   # -s prints the timings
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

import azllm.model.registry as registry
from azllm.config import ModelConfig, TinyModelConfig
from azllm.model.kernels import apply_liger
from azllm.model.load import load_model, materialize_base_model
from azllm.model.registry import resolve_model_dir

BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=[BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(["Azərbaycan Respublikasının paytaxtı Bakı şəhəridir."] * 10, trainer)
    out = tmp_path_factory.mktemp("tok")
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS).save_pretrained(out)
    return out


def test_smollm2_converts_once_then_loads_from_cache():
    t0 = time.perf_counter()
    model_dir = resolve_model_dir("smollm2-135m")
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = resolve_model_dir("smollm2-135m")
    model = load_model(again)
    reload_s = time.perf_counter() - t0
    print(f"\nsmollm2-135m: resolve (convert or cached) {first_s:.1f} s, cached resolve + load {reload_s:.2f} s")

    assert again == model_dir and (model_dir / "model.safetensors").is_file()
    assert reload_s < 10, f"cached reload took {reload_s:.1f} s: the cache is not being used"
    config = json.loads((model_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight, "SmolLM2 ties its head"

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert len(tokenizer) == model.config.vocab_size == 49152
    ids = tokenizer("Azərbaycan Respublikasının paytaxtı", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], 49152) and torch.isfinite(logits).all()


def test_failed_conversion_leaves_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AZLLM_CACHE", str(tmp_path))

    def broken(out_dir: Path) -> None:
        (out_dir / "config.json").write_text("{}")  # half written, then killed
        raise RuntimeError("killed mid-conversion")

    monkeypatch.setattr(registry, "_convert_smollm2", broken)
    with pytest.raises(RuntimeError, match="killed"):
        resolve_model_dir("smollm2-135m")
    assert list((tmp_path / "models").iterdir()) == [], "no target and no temp dir may be left behind"


def test_tiny_random_is_cached_seeded_and_carries_its_tokenizer(tokenizer_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("AZLLM_CACHE", str(tmp_path))
    cfg = ModelConfig(name="tiny-random", tokenizer=str(tokenizer_dir), seed=3,
                      tiny=TinyModelConfig(tie_word_embeddings=False))
    model_dir = materialize_base_model(cfg)
    assert materialize_base_model(cfg) == model_dir, "same config: same cached directory"

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = load_model(model_dir)
    assert model.config.vocab_size == len(tokenizer) == len(AutoTokenizer.from_pretrained(tokenizer_dir))
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 32
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.get_output_embeddings().weight is not model.get_input_embeddings().weight

    other = materialize_base_model(ModelConfig(name="tiny-random", tokenizer=str(tokenizer_dir), seed=4,
                                               tiny=TinyModelConfig(tie_word_embeddings=False)))
    assert other != model_dir
    assert not torch.equal(load_model(other).model.embed_tokens.weight, model.model.embed_tokens.weight)
    half = load_model(model_dir, dtype="bfloat16")
    assert half.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="accepted"):
        load_model(model_dir, dtype="fp8")


def test_local_dir_passes_through_and_unknown_names_fail_clearly(tmp_path):
    assert resolve_model_dir(str(tmp_path)) == tmp_path
    with pytest.raises(FileNotFoundError, match=r"no-such/model-xyz.*not a builtin \(smollm2-135m"):
        resolve_model_dir("no-such/model-xyz")
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_model(tmp_path)


def test_apply_liger_is_a_noop_on_cpu():
    if torch.cuda.is_available():
        pytest.skip("checks the CPU path; on a GPU Liger applies")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2))
    forward, norm_type = type(model).forward, type(model.model.norm)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert apply_liger(model) is False
    assert apply_liger(model, enabled=False) is False
    assert type(model).forward is forward and type(model.model.norm) is norm_type
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
