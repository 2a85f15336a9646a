"""LoRA SFT: the assistant-only loss mask, prompt-side truncation, and a few training steps.

A throwaway byte-level BPE (trained here on Azerbaijani chat records, Llama 3 specials
and chat template) and a random 2-layer Llama, hidden 32: the whole module runs in
well under a minute on CPU.

    .venv/bin/python -m pytest -q tests/test_sft.py
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from azllm.config import ConfigError, LoraConfig, SftConfig
from azllm.data.layout import PreparedData
from azllm.data.sft import read_chat_messages
from azllm.eval.loss import assistant_token_loss
from azllm.tokenizer.chat_records import fit_record, tokenize_chat
from azllm.train.sft import build_sft_trainer, prepare_records, run_sft

SFT_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "az_sft"


def build_tiny_tokenizer(out_dir: Path, *, template: str | None = None, num_lines: int = 300):
    """The project's byte-level BPE (Llama 3 specials and chat template), 600 tokens, on chat records."""
    from transformers import AutoTokenizer

    from azllm.tokenizer.train import train_tokenizer

    texts = []
    with open(SFT_DIR / "train.jsonl", encoding="utf-8") as f:
        for _, line in zip(range(num_lines), f, strict=False):
            texts += [m["content"] for m in json.loads(line)["messages"]]
    train_tokenizer(texts, vocab_size=600, min_frequency=2, out_dir=out_dir, show_progress=False)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    if template is not None:
        tokenizer.chat_template = template
        tokenizer.save_pretrained(out_dir)
    return tokenizer


def build_tiny_llama(out_dir: Path, vocab_size: int, *, seed: int = 0) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_sft")
    tokenizer = build_tiny_tokenizer(root / "tokenizer")
    build_tiny_llama(root / "model", len(tokenizer))
    tokenizer.save_pretrained(root / "model")  # a model directory holds its tokenizer (run_sft loads it there)
    assert tokenizer.convert_tokens_to_ids("<|eot_id|>") < len(tokenizer)
    return root / "model", root / "tokenizer", tokenizer


@pytest.fixture(scope="module")
def records():
    return read_chat_messages(SFT_DIR / "train.jsonl")[:16]


def _load(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)


def test_label_mask_is_exactly_the_answer_plus_eot(tiny_dirs, records, tmp_path):
    model_dir, _, tokenizer = tiny_dirs
    cfg = SftConfig(max_steps=1, max_length=512, lora=LoraConfig(rank=2, alpha=4.0))
    prepared = prepare_records(tokenizer, records, cfg.max_length)
    trainer = build_sft_trainer(cfg, _load(model_dir), tokenizer, prepared.records, out_dir=tmp_path)
    by_text = {tuple(ex["input_ids"]): ex["labels"] for ex in trainer.train_dataset}
    for messages in prepared.records:
        ids, _ = tokenize_chat(tokenizer, messages)
        labels = by_text[tuple(ids)]
        loss_ids = [t for t in labels if t != -100]
        assert tokenizer.decode(loss_ids) == messages[-1]["content"].strip() + "<|eot_id|>"
        # the loss tokens are one contiguous run at the end
        first = next(i for i, t in enumerate(labels) if t != -100)
        assert labels[first:] == ids[first:]
    assert prepared.num_loss_tokens == sum(sum(t != -100 for t in ex["labels"]) for ex in trainer.train_dataset)


def test_template_without_generation_tags_fails_clearly(tmp_path, records):
    from azllm.tokenizer.llama3 import LLAMA3_CHAT_TEMPLATE

    plain = LLAMA3_CHAT_TEMPLATE.replace("{%- generation -%}", "").replace("{%- endgeneration -%}", "")
    assert "{%- generation" not in plain and plain != LLAMA3_CHAT_TEMPLATE
    tokenizer = build_tiny_tokenizer(tmp_path, template=plain, num_lines=50)
    with pytest.raises(ValueError, match="generation"):
        prepare_records(tokenizer, records[:4], 512)


def test_truncation_keeps_the_answer_and_counts_drops(tiny_dirs):
    _, _, tokenizer = tiny_dirs
    answer = "Bakı Azərbaycanın paytaxtıdır."
    long_user = "Sual: " + " ".join(["Azərbaycan Respublikasının paytaxtı hansı şəhərdir?"] * 40)
    record = [{"role": "user", "content": "Salam, necəsən?"}, {"role": "assistant", "content": "Yaxşıyam."},
              {"role": "user", "content": long_user}, {"role": "assistant", "content": answer}]
    max_length = 64
    fitted, truncated = fit_record(tokenizer, record, max_length)
    assert truncated and fitted is not None
    ids, mask = tokenize_chat(tokenizer, fitted)
    assert len(ids) <= max_length
    # the earliest turns went first, then the user text was cut from the left
    assert [m["role"] for m in fitted] == ["user", "assistant"]
    assert long_user.endswith(fitted[0]["content"]) and len(fitted[0]["content"]) > 0
    assert tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m]) == answer + "<|eot_id|>"
    # as little as possible was cut: one more character no longer fits
    one_more = [{"role": "user", "content": long_user[-len(fitted[0]["content"]) - 1:]}, fitted[1]]
    assert len(tokenize_chat(tokenizer, one_more)[0]) > max_length

    too_long_answer = [{"role": "user", "content": "Yaz."},
                       {"role": "assistant", "content": " ".join([answer] * 40)}]
    fits = [{"role": "user", "content": "Paytaxt?"}, {"role": "assistant", "content": answer}]
    prepared = prepare_records(tokenizer, [record, too_long_answer, fits], max_length)
    assert (len(prepared.records), prepared.num_truncated, prepared.num_dropped) == (2, 1, 1)
    assert prepared.records[1] == fits


def test_lora_training_lowers_assistant_loss_and_freezes_base(tiny_dirs, records, tmp_path):
    model_dir, _, tokenizer = tiny_dirs
    cfg = SftConfig(max_steps=12, max_length=256, lr=2e-2, micro_batch_size=4, warmup_ratio=0.0,
                    lora=LoraConfig(rank=4, alpha=8.0, dropout=0.0))
    train = records[:8]
    model = _load(model_dir)
    before = assistant_token_loss(model, tokenizer, train)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = build_sft_trainer(cfg, model, tokenizer, prepare_records(tokenizer, train, 256).records,
                                out_dir=tmp_path)
    lora_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}
    trainer.train()
    after = assistant_token_loss(trainer.model, tokenizer, train)
    assert after < before - 0.1, f"assistant loss {before:.3f} -> {after:.3f}"

    params = dict(trainer.model.named_parameters())
    assert lora_before and all(not torch.equal(params[n], v) for n, v in lora_before.items()), \
        "a LoRA A/B matrix did not change"
    frozen = {n.replace("base_model.model.", "").replace(".base_layer", ""): p
              for n, p in params.items() if "lora_" not in n}
    for name, tensor in base.items():
        if name in frozen:
            assert torch.equal(frozen[name], tensor), f"frozen weight {name} changed"
    assert not any(p.requires_grad for n, p in params.items() if "lora_" not in n)


def test_run_sft_end_to_end(tiny_dirs, tmp_path):
    model_dir, _, _ = tiny_dirs
    data = PreparedData(data_dir=tmp_path / "data")
    data.data_dir.mkdir()
    lines = (SFT_DIR / "train.jsonl").read_text(encoding="utf-8").splitlines()
    data.sft_train.write_text("\n".join(lines[:8]) + "\n", encoding="utf-8")
    data.sft_validation.write_text("\n".join(lines[8:12]) + "\n", encoding="utf-8")
    saved = []
    cfg = SftConfig(max_steps=4, max_length=256, lr=1e-2, micro_batch_size=4, save_steps=2, merge=True,
                    lora=LoraConfig(rank=4, alpha=8.0))
    result = run_sft(cfg, model_dir=model_dir, data=data, out_dir=tmp_path / "out", on_checkpoint=saved.append)
    assert (result.adapter_dir / "adapter_config.json").exists()
    assert (result.adapter_dir / "tokenizer.json").exists()
    assert result.merged_dir is not None and (result.merged_dir / "config.json").exists()
    assert [p.name for p in saved] == ["checkpoint-2", "checkpoint-4"] and all(p.is_dir() for p in saved)
    assert result.num_train_records == 8 and result.num_loss_tokens > 0
    assert len(result.metrics["train_loss_history"]) == 4
    assert result.metrics["eval_assistant_loss_after"] < result.metrics["eval_assistant_loss_before"]
    if importlib.util.find_spec("tensorboard"):
        assert list((tmp_path / "out").glob("runs/*/events.out.tfevents.*")), "no TensorBoard logs in out_dir"

    # resume from the step-2 checkpoint: training continues to step 4
    cfg2 = SftConfig(max_steps=4, max_length=256, lr=1e-2, micro_batch_size=4, save_steps=2,
                     lora=LoraConfig(rank=4, alpha=8.0))
    resumed = run_sft(cfg2, model_dir=model_dir, data=data, out_dir=tmp_path / "out",
                      resume_from_checkpoint=str(saved[0]))
    assert resumed.metrics["global_step"] == 4
    assert [h["step"] for h in resumed.metrics["train_loss_history"]] == [1, 2, 3, 4]


def test_config_errors():
    with pytest.raises(ConfigError, match="max_length"):
        SftConfig(max_length=8)
