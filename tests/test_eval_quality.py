"""The demo-scale verdict (azllm.eval.quality) and `azllm chat` printing it before it answers.

Run: .venv/bin/python -m pytest -q tests/test_eval_quality.py   (a few seconds)
"""

from __future__ import annotations

import tomllib

from test_sft import build_tiny_llama

from azllm.eval.quality import MIN_CPT_STEPS, MIN_CPT_TOKENS, demo_scale_verdict, run_quality_verdict
from azllm.runs.chat import ChatModel, quality_note

DEMO_CPT = {"embeddings": {"steps": 6, "tokens": 1536, "num_params": 134_515_008},
            "full": {"steps": 6, "tokens": 1536, "num_params": 134_515_008}}


def test_demo_run_is_demo_scale_and_names_the_real_presets(repo_root):
    verdict = run_quality_verdict(DEMO_CPT, {"global_step": 8})
    assert verdict.demo_scale
    assert verdict.message.startswith("demo-scale: 12 CPT optimizer steps on 3,072 tokens, 8 SFT steps, "
                                      "a 134,515,008-parameter model (below a real run: 12 CPT optimizer steps")
    assert "fluent answers are not expected" in verdict.message
    for preset in ("smollm2", "llama-3.2-1b"):  # the presets it recommends exist
        assert f"`{preset}`" in verdict.message and (repo_root / "configs" / f"{preset}.toml").is_file()
    assert len(verdict.reasons) == 3  # steps, tokens, SFT steps; the model itself is real-sized


def test_real_preset_scale_is_not_demo_scale(repo_root):
    preset = tomllib.loads((repo_root / "configs" / "smollm2.toml").read_text())
    steps = preset["cpt"]["embeddings"]["max_steps"] + preset["cpt"]["full"]["max_steps"]
    tokens = steps * preset["cpt"]["full"]["micro_batch_size"] * preset["cpt"]["block_size"]
    assert steps >= 10 * MIN_CPT_STEPS and tokens >= 10 * MIN_CPT_TOKENS  # thresholds: a tenth of smollm2
    verdict = demo_scale_verdict(cpt_steps=steps, cpt_tokens=tokens, sft_steps=300, num_params=134_515_008)
    assert not verdict.demo_scale and verdict.message == "" and verdict.reasons == []
    # unknown figures are not held against a run; a test-size model is demo-scale on its own
    assert not demo_scale_verdict(cpt_steps=None, cpt_tokens=None, sft_steps=None, num_params=None).demo_scale
    tiny = demo_scale_verdict(cpt_steps=None, cpt_tokens=None, sft_steps=None, num_params=20_000)
    assert tiny.demo_scale and tiny.reasons == ["a 20,000-parameter test model (< 50,000,000)"]
    assert run_quality_verdict(None, None).demo_scale is False


def test_chat_note_from_run_metrics_or_model_size(tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(build_tiny_llama(tmp_path / "m", 600))
    spec = ChatModel(model_dir=tmp_path / "m", tokenizer_dir=tmp_path / "m", adapter_dir=None)
    assert "test model" in quality_note(spec, model)  # no run metrics: the model's size decides
    real = demo_scale_verdict(cpt_steps=2000, cpt_tokens=30_000_000, sft_steps=300, num_params=None)
    assert quality_note(ChatModel(model_dir=spec.model_dir, tokenizer_dir=spec.tokenizer_dir, adapter_dir=None,
                                  quality=real), model) == ""
    demo = run_quality_verdict(DEMO_CPT, {"global_step": 8})
    assert quality_note(ChatModel(model_dir=spec.model_dir, tokenizer_dir=spec.tokenizer_dir, adapter_dir=None,
                                  quality=demo), model) == demo.message
