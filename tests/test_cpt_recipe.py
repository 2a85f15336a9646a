"""The CPT recipe knobs, on real FSDP2 over 2 gloo processes (torchrun, CPU).

Covers phase 1's trainable set (`[cpt.embeddings] train = "embeddings+outer:K"`: exactly the
embeddings, the head and the outer decoder layers change, every other weight is bit-identical),
the embeddings' own learning rate (`embedding_lr_multiplier`: the logged lr of each optimizer
group), equal compute across arms (`[cpt] budget = "bytes"`: an arm whose tokenizer needs fewer
tokens runs proportionally fewer steps and sees the baseline's bytes) and the errors for bad
values. Tiny random Llamas on throwaway byte-level BPEs; three torchrun launches, ~1.5 minutes.

Run: .venv/bin/python -m pytest -q tests/test_cpt_recipe.py
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from test_cpt import BLOCK_SIZE, TEXTS, _weights

from azllm.config import (
    ComputeConfig,
    ConfigError,
    CptConfig,
    CptRuntime,
    ModelConfig,
    PhaseConfig,
    PipelineConfig,
    parse_config_text,
)
from azllm.data.layout import PreparedData
from azllm.train.arms import (
    ArmCorpus,
    load_arm_corpus,
    pack_arm_corpus,
    phase_budget,
    train_embeddings_phase,
    train_full_phase,
)
from azllm.train.budget import plan_phase
from azllm.train.launcher import run_cpt_phase
from azllm.train.metrics import read_metrics_records
from azllm.train.parallelize import freeze_for_phase
from azllm.train.phase import TorchrunLayout


def _tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(TEXTS, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|begin_of_text|>", "<|end_of_text|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|begin_of_text|>",
                                   eos_token="<|end_of_text|>")


def _tiny_llama(tok, *, layers: int, tied: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=((len(tok) + 63) // 64) * 64, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=tied,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))


@pytest.fixture(scope="module")
def recipe_models(tmp_path_factory) -> dict[str, Path]:
    """`deep`: 4 layers, untied head. `baseline` / `replace`: 2 layers, tied, on a small and a
    larger BPE (fewer tokens for the same text). `data`: train.jsonl of TEXTS. `blocks`: packed."""
    from azllm.data.packing import pack_corpus

    root = tmp_path_factory.mktemp("recipe")
    data = root / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS), encoding="utf-8")
    dirs = {"data": data}
    for name, vocab, layers, tied in (("deep", 400, 4, False), ("baseline", 280, 2, True), ("replace", 340, 2, True)):
        tok = _tokenizer(vocab)
        dirs[name] = root / name
        _tiny_llama(tok, layers=layers, tied=tied).save_pretrained(dirs[name])
        tok.save_pretrained(dirs[name])
    dirs["blocks"] = pack_corpus(data / "train.jsonl", dirs["deep"], block_size=BLOCK_SIZE,
                                 cache_root=root / "packed").path
    return dirs


def _start(work_dir: Path) -> dict:
    return [r for r in read_metrics_records(work_dir / "metrics.jsonl") if r.get("event") == "start"][-1]


# ---------------------------------------------------------------------------
# Phase 1: embeddings, head and the outer layers; the embeddings' own lr
# ---------------------------------------------------------------------------


def test_outer_layers_train_and_the_rest_is_bit_identical(recipe_models, tmp_path):
    pc = PhaseConfig(lr=1e-2, max_steps=3, micro_batch_size=2, warmup_steps=1, train="embeddings+outer:1",
                     embedding_lr_multiplier=4.0)
    cfg = CptConfig(block_size=BLOCK_SIZE, runtime=CptRuntime(liger=False, seed=7), embeddings=pc)
    result = run_cpt_phase(cfg, phase="embeddings", model_dir=recipe_models["deep"],
                           blocks_path=recipe_models["blocks"], out_dir=tmp_path / "out",
                           work_dir=tmp_path / "work", layout=TorchrunLayout(nproc_per_node=2))
    assert result.metrics["params_are_dtensors"] and result.metrics["steps"] == 3
    before, after = _weights(recipe_models["deep"]), _weights(result.model_dir)
    trained = [n for n in before if n.startswith(("model.embed_tokens.", "lm_head.", "model.layers.0.",
                                                  "model.layers.3."))]
    assert len(trained) == 2 + 2 * 9, trained  # a Llama layer: 7 matrices + 2 norms
    for name, t in before.items():
        if name in trained:
            assert not torch.equal(t, after[name]), f"{name} did not train"
        else:
            assert torch.equal(t, after[name]), f"frozen weight {name} changed"
    start = _start(tmp_path / "work")
    assert sorted(start["trainable"]) == sorted(trained) and start["train"] == "embeddings+outer:1"
    groups = start["optimizer_groups"]
    assert groups["embeddings"] == {"lr": pytest.approx(4e-2), "numel": before["model.embed_tokens.weight"].numel()
                                    + before["lm_head.weight"].numel()}
    assert groups["body"]["lr"] == groups["body_no_decay"]["lr"] == pytest.approx(1e-2)
    assert sum(g["numel"] for g in groups.values()) == result.metrics["num_trainable_params"]
    _assert_group_lrs(result.metrics["history"], multiplier=4.0, peak_lr=1e-2)


def _assert_group_lrs(history: list[dict], *, multiplier: float, peak_lr: float) -> None:
    """Every logged step: embeddings at lr x multiplier, the body at lr; the schedule reaches lr."""
    for h in history:
        lrs = h["lr_groups"]
        assert lrs["embeddings"] == pytest.approx(multiplier * lrs["body"]), h["step"]
        assert lrs["body_no_decay"] == pytest.approx(lrs["body"]) and h["lr"] == pytest.approx(lrs["body"])
    assert max(h["lr"] for h in history) == pytest.approx(peak_lr)


def test_freeze_rejects_more_outer_layers_than_the_model_has(recipe_models):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(recipe_models["deep"])
    names = freeze_for_phase(model, "embeddings", num_outer_layers=2)  # all 4 layers, not the final norm
    assert "model.norm.weight" not in names and len(names) == 2 + 4 * 9
    with pytest.raises(AssertionError):  # the clear error comes before torchrun (next test)
        freeze_for_phase(model, "embeddings", num_outer_layers=3)


def test_too_many_outer_layers_fail_before_torchrun(recipe_models, tmp_path):
    cfg = CptConfig(block_size=BLOCK_SIZE, embeddings=PhaseConfig(train="embeddings+outer:3"))
    with pytest.raises(ConfigError, match=r"train='embeddings\+outer:3'.*num_hidden_layers=4; use K <= 2"):
        run_cpt_phase(cfg, phase="embeddings", model_dir=recipe_models["deep"], blocks_path=recipe_models["blocks"],
                      out_dir=tmp_path / "out", work_dir=tmp_path / "work", layout=TorchrunLayout(nproc_per_node=2))
    assert not (tmp_path / "work").exists(), "torchrun was prepared before the check"
    # the flow's phase 1 checks the base model before adapting its vocabulary
    pipeline = PipelineConfig(model=ModelConfig(name=str(recipe_models["deep"])), cpt=cfg)
    with pytest.raises(ConfigError, match=r"outer:3.*use K <= 2"):
        train_embeddings_phase(pipeline, arm="replace", tokenizer_dir=recipe_models["deep"],
                               corpus=load_arm_corpus(recipe_models["blocks"].parent, {}), out_dir=tmp_path / "phase1")
    assert not (tmp_path / "phase1").exists()


@pytest.mark.parametrize(("toml", "message"), [
    ('[cpt.embeddings]\ntrain = "outer:2"', r"train='outer:2'; accepted: \['embeddings', 'embeddings\+outer:K'\]"
                                            r".*\(in \[cpt.embeddings\]\)"),
    ('[cpt.embeddings]\ntrain = "embeddings+outer:0"', r"accepted.*K >= 1"),
    ('[cpt.full]\ntrain = "embeddings+outer:2"', r"\[cpt.full\] train=.*set train in \[cpt.embeddings\]"),
    ('[cpt.embeddings]\nembedding_lr_multiplier = 10.0', r"only rescales lr; set lr instead"),
    ('[cpt.full]\nembedding_lr_multiplier = 0.0', r"embedding_lr_multiplier must be > 0"),
    ('[cpt]\nbudget = "flops"', r"budget='flops'; accepted: \['steps', 'tokens', 'bytes'\]"),
])
def test_bad_recipe_values_name_the_key_and_the_fix(toml, message):
    with pytest.raises(ConfigError, match=message):
        parse_config_text(toml, source="preset.toml")


# ---------------------------------------------------------------------------
# Equal compute: budget = "bytes"
# ---------------------------------------------------------------------------


def _pipeline(recipe_models, budget: str) -> PipelineConfig:
    full = PhaseConfig(lr=1e-2, max_steps=8, micro_batch_size=1, warmup_steps=2, embedding_lr_multiplier=10.0)
    return PipelineConfig(model=ModelConfig(name=str(recipe_models["baseline"])),
                          cpt=CptConfig(block_size=BLOCK_SIZE, runtime=CptRuntime(liger=False, seed=7), budget=budget,
                                        full=full),
                          compute=ComputeConfig(nproc_per_node=2))


def _corpus_tokens(model_dir: Path) -> int:
    """Independent count: each document tokenized on its own, plus its EOS."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return sum(len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in TEXTS)


@pytest.fixture(scope="module")
def bytes_runs(recipe_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("budget")
    cfg = _pipeline(recipe_models, "bytes")
    data = PreparedData(corpus_dir=recipe_models["data"])
    return {arm: train_full_phase(cfg, init_dir=recipe_models[arm], out_dir=tmp / arm,
                                  corpus=pack_arm_corpus(cfg, tokenizer_dir=recipe_models[arm], data=data))
            for arm in ("baseline", "replace")}


def test_bytes_budget_gives_fewer_steps_to_the_arm_with_more_bytes_per_token(bytes_runs, recipe_models):
    base_tokens, arm_tokens = _corpus_tokens(recipe_models["baseline"]), _corpus_tokens(recipe_models["replace"])
    assert arm_tokens < 0.8 * base_tokens, "the test needs tokenizers of clearly different fertility"
    base, arm = bytes_runs["baseline"].metrics, bytes_runs["replace"].metrics
    assert base["steps"] == base["budget_steps"] == 8, "the baseline is the reference: its configured steps"
    assert arm["steps"] == arm["budget_steps"] == math.floor(8 * arm_tokens / base_tokens + 0.5)
    assert arm["steps"] < base["steps"]
    assert arm["reference_tokens"] == base["arm_tokens"] == base_tokens and arm["arm_tokens"] == arm_tokens
    corpus_bytes = sum(len(t.encode("utf-8")) for t in TEXTS)
    assert arm["corpus_bytes"] == base["corpus_bytes"] == corpus_bytes
    # tokens seen: steps x (1 sequence x 2 ranks x BLOCK_SIZE); the bytes agree within half an
    # arm step, which with 1 sequence per rank on 2 ranks is one block of the arm's bytes
    for m in (base, arm):
        assert m["tokens_seen"] == m["steps"] * 2 * BLOCK_SIZE == m["tokens"]
        assert m["bytes_seen"] == pytest.approx(m["tokens_seen"] * corpus_bytes / m["arm_tokens"], abs=1)
    block_bytes = BLOCK_SIZE * corpus_bytes / arm_tokens
    assert abs(arm["bytes_seen"] - base["bytes_seen"]) <= block_bytes
    # the same comparison at equal steps would have been far apart
    assert base["steps"] * 2 * BLOCK_SIZE * corpus_bytes / arm_tokens - base["bytes_seen"] > 2 * block_bytes
    for m in (base, arm):
        assert m["device_hours"] == pytest.approx(m["wall_s"] * 2 / 3600) and m["gpu_hours"] == 0.0
        assert m["device_hours"] > 0


def test_full_phase_embedding_lr_multiplier_with_tied_head(bytes_runs, recipe_models):
    m = bytes_runs["baseline"].metrics
    start = _start(Path(bytes_runs["baseline"].model_dir).parent / "work")
    before = _weights(recipe_models["baseline"])
    assert start["tied_embeddings"]
    groups = start["optimizer_groups"]
    assert groups["embeddings"] == {"lr": pytest.approx(0.1), "numel": before["model.embed_tokens.weight"].numel()}
    assert sum(g["numel"] for g in groups.values()) == m["num_params"] == m["num_trainable_params"]
    _assert_group_lrs(m["history"], multiplier=10.0, peak_lr=1e-2)
    after = _weights(bytes_runs["baseline"].model_dir)
    assert all(not torch.equal(t, after[n]) for n, t in before.items()), "phase 2 left a weight untrained"


def test_steps_and_tokens_budgets_keep_the_configured_steps(recipe_models):
    train = PhaseConfig(max_steps=8, warmup_steps=2)
    for budget in ("steps", "tokens"):
        plan = plan_phase(train, budget, corpus_bytes=1000, arm_tokens=200)
        assert plan.apply(train) == train and plan.reference_tokens is None
        assert plan.seen(64)["bytes_seen"] == 320
    plan = plan_phase(train, "bytes", corpus_bytes=1000, arm_tokens=100, reference_tokens=300)
    assert (plan.steps, plan.warmup_steps) == (3, 1)  # 8 x 1/3 = 2.67 -> 3; warm-up 2/3 -> 1
    from azllm.data.packing import pack_corpus

    packed = pack_corpus(recipe_models["data"] / "train.jsonl", recipe_models["deep"], block_size=BLOCK_SIZE,
                         cache_root=recipe_models["blocks"].parent.parent)
    assert packed.num_bytes == sum(len(t.encode()) for t in TEXTS)  # the packer counts the budget's bytes
    # the phases plan from the packed counts alone; `bytes` needs the baseline's count packed with them
    bytes_cfg = _pipeline(recipe_models, "bytes")
    plan = phase_budget(bytes_cfg, "full", ArmCorpus(packed=packed, reference_tokens=2 * packed.num_tokens))
    assert plan.steps == 4 and plan.corpus_bytes == packed.num_bytes and plan.arm_tokens == packed.num_tokens
    with pytest.raises(ValueError, match=r"budget = 'bytes' needs the base tokenizer's token count.*pack_arm_corpus"):
        phase_budget(bytes_cfg, "full", ArmCorpus(packed=packed))
