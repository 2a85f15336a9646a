"""The preference stage: the verifiable rewards on hand-made answers, DPO pairs (user's and the
run's own, bad ones counted), and a few DPO / GRPO steps that change exactly the adapter.

The tiny tokenizer and random 2-layer Llama of tests/test_sft.py, with a random (nonzero) LoRA
adapter standing in for the SFT one.

    .venv/bin/python -m pytest -q tests/test_preference.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_sft import SFT_DIR, build_tiny_llama, build_tiny_tokenizer

from azllm.config import ConfigError, PreferenceConfig, load_pipeline_config
from azllm.data.layout import PreparedData
from azllm.data.preference import read_preference_pairs
from azllm.data.readers import DataError
from azllm.data.sft import read_chat_messages
from azllm.eval.rewards import (
    answer_verdict,
    azerbaijani_reward,
    chrf_reward,
    eot_reward,
    no_repetition_reward,
)
from azllm.train.preference import (
    build_dpo_trainer,
    build_grpo_trainer,
    fit_pairs,
    load_policy,
    reward_functions,
    run_preference,
)

AZ = "Balansınızı yoxlamaq üçün *100# yığıb zəng düyməsini basın, ekranda əsas balansınız göstəriləcək."
TR = "Bakiyenizi öğrenmek için *100# tuşlayıp arama tuşuna basın, ekranda ana bakiyeniz gösterilecektir."
EN = "To check your balance, dial *100# and press the call button; your main balance will be shown."
LOOP = "Balansınızı yoxlamaq üçün zəng edin. " * 4


def test_rewards_on_hand_made_answers():
    assert azerbaijani_reward(AZ) == 1.0
    assert azerbaijani_reward(TR) == 0.0, "Turkish must score 0 on the language reward"
    assert azerbaijani_reward(EN) == 0.0
    assert azerbaijani_reward("*100# 123") == 0.0  # no letters: no language
    assert no_repetition_reward(AZ) == 1.0
    assert no_repetition_reward(LOOP) == 0.0, "a looped answer must score 0 on repetition"
    assert no_repetition_reward("Bəli.") == 1.0  # too short to repeat a 4-gram
    assert chrf_reward(AZ, AZ) == pytest.approx(1.0)
    assert chrf_reward(EN, AZ) < chrf_reward(AZ[:60], AZ) < 1.0
    eot, limit = 7, 5
    assert eot_reward([3, 4, eot], eot, limit) == 1.0
    assert eot_reward([3, 4, 5, 6, 8], eot, limit) == 0.0  # cut by the length limit
    assert eot_reward([3, 4, 5, 6, 8, eot], eot, limit) == 0.0  # ends, but past the limit
    assert eot_reward([3, 4, 1], eot, limit) == 0.0  # another stop token
    assert answer_verdict(AZ, AZ, margin=20) is None
    assert answer_verdict(TR, AZ, margin=20) == "language turkish"
    assert answer_verdict(LOOP, AZ, margin=20) == "repeated 4-gram"
    assert answer_verdict(AZ[:50] + " Zəng edin.", AZ, margin=5).startswith("chrF ")


def test_config_checks_and_presets():
    assert PreferenceConfig().method == "none"
    with pytest.raises(ConfigError, match=r"\[preference\] method='ppo'"):
        PreferenceConfig(method="ppo")
    with pytest.raises(ConfigError, match="multiple of num_generations"):
        PreferenceConfig(method="grpo", micro_batch_size=3, num_generations=2)
    with pytest.raises(ConfigError, match="reward weights"):
        PreferenceConfig(weight_azerbaijani=0, weight_no_repetition=0, weight_chrf=0, weight_eot=0)
    root = Path(__file__).resolve().parent.parent
    methods = {name: load_pipeline_config(root / "configs" / f"{name}.toml").preference.method
               for name in ("tiny", "demo", "smollm2", "llama-3.2-1b", "llama-3.1-8b")}
    assert methods["tiny"] != "none" and methods["demo"] != "none", methods
    assert all(m in ("dpo", "grpo") for m in methods.values()), methods


@pytest.fixture(scope="module")
def tiny_sft(tmp_path_factory):
    """Tiny tokenizer, random Llama and a random nonzero LoRA adapter (the stand-in for SFT's)."""
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("tiny_pref")
    tokenizer = build_tiny_tokenizer(root / "tokenizer")
    build_tiny_llama(root / "model", len(tokenizer))
    tokenizer.save_pretrained(root / "model")  # a model directory holds its tokenizer
    torch.manual_seed(1)
    base = _load(root / "model")
    peft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False,
                                           target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    peft.save_pretrained(root / "adapter")
    return root / "model", root / "tokenizer", root / "adapter", tokenizer


def _load(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)


def _write_pairs(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def test_user_pairs_bad_ones_counted_malformed_ones_named(tiny_sft, tmp_path):
    _, _, _, tokenizer = tiny_sft
    good = {"prompt": "Balansımı necə yoxlaya bilərəm?", "chosen": AZ, "rejected": TR}
    chat = {"prompt": [{"role": "user", "content": "Balans?"}],
            "chosen": [{"role": "assistant", "content": AZ}], "rejected": [{"role": "assistant", "content": EN}]}
    path = _write_pairs(tmp_path / "pairs.jsonl", [
        good, chat,
        {**good, "chosen": "  "},                     # line 3: empty chosen
        {**good, "rejected": AZ},                     # line 4: identical
        {**good, "prompt": "Sual " * 400},            # line 5: prompt over the limit
    ])
    pairs = fit_pairs(tokenizer, read_preference_pairs(str(path)),
                      PreferenceConfig(method="dpo", max_prompt_length=64, max_completion_length=96))
    assert [p["where"] for p in pairs.pairs] == [f"{path}:1", f"{path}:2"]
    assert pairs.pairs[1] == {"prompt": chat["prompt"], "chosen": AZ, "rejected": EN, "where": f"{path}:2"}
    assert dict(pairs.skipped) == {"empty chosen": 1, "chosen identical to rejected": 1,
                                   "prompt longer than max_prompt_length=64 tokens": 1}
    assert pairs.examples[0] == f"{path}:3: empty chosen"

    # malformed lines stop with file:line, the field and what to write instead
    with pytest.raises(DataError, match=rf"{path.name}:2: missing field\(s\) \['rejected'\]"):
        read_preference_pairs(str(_write_pairs(path, [good, {"prompt": "x", "chosen": AZ}])))
    with pytest.raises(DataError, match=r":1: field 'prompt' must end with a user turn"):
        read_preference_pairs(str(_write_pairs(path, [{**good, "prompt": chat["chosen"]}])))
    with pytest.raises(DataError, match=r":1: field 'chosen' must be a string or"):
        read_preference_pairs(str(_write_pairs(path, [{**good, "chosen": 3}])))
    with pytest.raises(DataError, match=r"no usable preference pair \(1 skipped"):
        read_preference_pairs(str(_write_pairs(path, [{**good, "rejected": AZ}])))


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _assert_only_adapter_changed(before: dict[str, torch.Tensor], model) -> None:
    """Every trainable ("default") LoRA matrix moved; the base weights and DPO's "ref" copy did not."""
    after = dict(model.named_parameters())
    adapter = [n for n in before if ".lora_" in n and ".default." in n]
    assert adapter and all(after[n].requires_grad for n in adapter)
    unchanged = [n for n in adapter if torch.equal(after[n], before[n])]
    assert not unchanged, f"adapter matrices that did not train: {unchanged}"
    for name, tensor in before.items():
        if name not in adapter:
            assert torch.equal(after[name], tensor), f"{name} changed but is not the trained adapter"
            assert not after[name].requires_grad, f"{name} is trainable"


def test_dpo_steps_change_exactly_the_adapter(tiny_sft, tmp_path):
    model_dir, _, adapter_dir, tokenizer = tiny_sft
    records = read_chat_messages(SFT_DIR / "train.jsonl")[:4]
    pairs = [{"prompt": r[:-1], "chosen": r[-1]["content"], "rejected": TR} for r in records]
    cfg = PreferenceConfig(method="dpo", max_steps=2, lr=5e-3, micro_batch_size=2, max_prompt_length=128,
                           max_completion_length=128)
    model = load_policy(model_dir, adapter_dir)
    trainer = build_dpo_trainer(cfg, model, tokenizer, pairs, out_dir=tmp_path)
    assert set(trainer.model.peft_config) == {"default", "ref"}  # TRL's frozen copy of the SFT adapter
    before = _snapshot(trainer.model)
    refs = {n: p for n, p in before.items() if ".ref." in n}
    assert refs and all(torch.equal(p, before[n.replace(".ref.", ".default.")]) for n, p in refs.items())
    trainer.train()
    _assert_only_adapter_changed(before, trainer.model)
    assert any("rewards/margins" in e for e in trainer.state.log_history)


def test_grpo_steps_change_exactly_the_adapter_and_log_each_reward(tiny_sft, tmp_path):
    model_dir, _, adapter_dir, tokenizer = tiny_sft
    records = read_chat_messages(SFT_DIR / "train.jsonl")[:4]
    cfg = PreferenceConfig(method="grpo", max_steps=2, lr=5e-3, micro_batch_size=4, num_generations=4,
                           max_completion_length=12, max_prompt_length=128)
    assert [f.__name__ for f in reward_functions(tokenizer, cfg)] == ["azerbaijani", "no_repetition", "chrf", "eot"]
    trainer = build_grpo_trainer(cfg, load_policy(model_dir, adapter_dir), tokenizer, records, out_dir=tmp_path)
    assert trainer.train_dataset[0]["reference"] == records[0][-1]["content"]
    before = _snapshot(trainer.model)
    trainer.train()
    _assert_only_adapter_changed(before, trainer.model)
    logged = {k for e in trainer.state.log_history for k in e}
    assert {f"rewards/{name}/mean" for name in cfg.reward_weights} <= logged, sorted(logged)


def test_run_preference_builds_pairs_from_the_run_and_resumes(tiny_sft, tmp_path):
    model_dir, _, adapter_dir, _ = tiny_sft
    data = PreparedData(data_dir=tmp_path)
    train_path = data.sft_train
    lines = (SFT_DIR / "train.jsonl").read_text(encoding="utf-8").splitlines()
    train_path.write_text("\n".join(lines[:6]) + "\n", encoding="utf-8")
    cfg = PreferenceConfig(method="dpo", max_steps=2, save_steps=1, micro_batch_size=2, lr=1e-3,
                           max_prompt_length=128, max_completion_length=16, pair_margin=20.0)
    saved = []
    result = run_preference(cfg, model_dir=model_dir, adapter_dir=adapter_dir, data=data, out_dir=tmp_path / "out",
                            on_checkpoint=saved.append)
    m = result.metrics
    # a random model's samples are never Azerbaijani near the reference: every prompt gives a pair
    assert m["pairs_source"] == "run" and m["num_pairs"] + sum(m["skipped"].values()) == 6
    pairs = [json.loads(x) for x in result.pairs_path.read_text(encoding="utf-8").splitlines()]
    assert len(pairs) == m["num_pairs"] > 0
    refs = {tuple(json.dumps(r) for r in rec[:-1]): rec[-1]["content"] for rec in read_chat_messages(train_path)}
    for p in pairs:
        assert p["chosen"] == refs[tuple(json.dumps(r) for r in p["prompt"])]
        assert answer_verdict(p["rejected"], p["chosen"], cfg.pair_margin) == p["why_rejected"]
    assert (result.adapter_dir / "adapter_model.safetensors").exists()
    assert not (result.adapter_dir / "ref").exists(), "only the trained adapter is shipped"
    assert [p.name for p in saved] == ["checkpoint-1", "checkpoint-2"]
    assert m["global_step"] == 2 and [h["step"] for h in m["train_history"] if "loss" in h] == [1, 2]

    resumed = run_preference(cfg, model_dir=model_dir, adapter_dir=adapter_dir, data=data, out_dir=tmp_path / "out",
                             resume_from_checkpoint=str(saved[0]))
    assert resumed.metrics["global_step"] == 2
    assert [h["step"] for h in resumed.metrics["train_history"] if "loss" in h] == [1, 2]


def test_method_none_keeps_sft_as_the_shipped_stage():
    """With `[preference] method = "none"` the run holds no preference adapter: export and chat pick the SFT
    adapter exactly as before the stage existed, and the SFT adapter's cache directory keeps its name."""
    from azllm.runs.export import choose_stage
    from azllm.runs.parts import RunParts, latest_stage, with_stage

    parts = RunParts(pathspec="AzLLMFlow/1", arm="extend", chosen_arm="extend", model_ref="m",
                     adapter_ref="sft", summary=None, step="end")
    assert latest_stage(parts) == "sft" and choose_stage(parts, None) == ("sft", [])
    assert with_stage(parts, "sft") == parts and with_stage(parts, "cpt").adapter_ref is None
    with pytest.raises(ValueError, match="no preference adapter"):
        choose_stage(parts, "preference")
    with_pref = RunParts(**{**parts.__dict__, "preference_adapter_ref": "pref"})
    assert latest_stage(with_pref) == "preference" and choose_stage(with_pref, None) == ("preference", [])
    chosen = with_stage(with_pref, "preference")
    assert (chosen.adapter_ref, chosen.adapter_stage) == ("pref", "preference")
    assert choose_stage(with_pref, "sft") == ("sft", []) and with_stage(with_pref, "sft").adapter_ref == "sft"
    with pytest.raises(ValueError, match="nothing to train"):
        run_preference(PreferenceConfig(), model_dir=Path("m"), adapter_dir=Path("a"),
                       data=PreparedData(data_dir=Path("x")), out_dir=Path("o"))
