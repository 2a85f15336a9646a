"""The rebuilt Llama 3 / 3.2 tokenizer: token-for-token equal to tiktoken over Meta's ranks,
fertility 3.335 on the other-domain file, special tokens and the chat template's assistant mask.

Run: .venv/bin/python -m pytest -q tests/test_tokenizer_llama3.py
"""

from __future__ import annotations

import json

import pytest

from azllm.tokenizer.llama3 import (
    LLAMA3_CHAT_TEMPLATE,
    LLAMA3_SPECIAL_TOKENS,
    build_llama3_tokenizer,
    llama3_tiktoken_encoding,
)
from azllm.tokenizer.metrics import tokenizer_metrics


def _texts(path, every: int = 1):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for i, line in enumerate(f) if i % every == 0]


@pytest.fixture(scope="module")
def llama3():
    return build_llama3_tokenizer()


@pytest.fixture(scope="module")
def other_domain(shared_data):
    return _texts(shared_data / "az_eval_other_domain.jsonl")


def test_equal_to_tiktoken_token_for_token(llama3, other_domain, shared_data):
    enc = llama3_tiktoken_encoding()
    corpus_sample = _texts(shared_data / "az_corpus" / "train-00000.jsonl", every=25)
    extra_sample = _texts(shared_data / "az_corpus_extra" / "train-00000.jsonl", every=5)
    texts = other_domain + corpus_sample + extra_sample
    assert len(other_domain) == 225 and len(corpus_sample) > 200
    ours = llama3.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    for i, (text, got) in enumerate(zip(texts, ours)):
        want = enc.encode_ordinary(text)
        assert got.ids == want, f"document {i} differs from tiktoken at token " \
            f"{next(j for j, (a, b) in enumerate(zip(got.ids + [-1], want + [-1])) if a != b)}"


def test_fertility_matches_design_figure(llama3, other_domain):
    m = tokenizer_metrics(llama3, other_domain)
    assert round(m["fertility"], 3) == 3.335
    assert m["words"] == 35_956  # SOURCES.md
    assert m["vocab_size"] == 128_256


def test_special_tokens_follow_meta(llama3):
    assert len(LLAMA3_SPECIAL_TOKENS) == 256
    expected = {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|finetune_right_pad_id|>": 128004,
                "<|start_header_id|>": 128006, "<|end_header_id|>": 128007, "<|eot_id|>": 128009,
                "<|reserved_special_token_247|>": 128255}
    for name, i in expected.items():
        assert LLAMA3_SPECIAL_TOKENS[name] == i
        assert llama3.convert_tokens_to_ids(name) == i
    assert (llama3.bos_token, llama3.eos_token, llama3.pad_token_id) == ("<|begin_of_text|>", "<|end_of_text|>",
                                                                         128004)
    assert llama3.encode("Salam")[0] == 128000, "encode() should prepend BOS like Meta's tokenizer"
    assert llama3.backend_tokenizer.model.ignore_merges


def test_chat_template_masks_exactly_the_assistant_turns(llama3):
    assert llama3.chat_template == LLAMA3_CHAT_TEMPLATE
    messages = [{"role": "system", "content": "Sən köməkçisən."},
                {"role": "user", "content": "Salam!"},
                {"role": "assistant", "content": "Salam, necə kömək edə bilərəm?"},
                {"role": "user", "content": "Bakı haradadır?"},
                {"role": "assistant", "content": "Azərbaycanda."}]
    out = llama3.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert ids[0] == 128000 and ids.count(128000) == 1
    text = llama3.decode(ids)
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nSən köməkçisən.<|eot_id|>")
    masked = [i for i, m in zip(ids, mask) if m]
    want = (llama3.encode("Salam, necə kömək edə bilərəm?", add_special_tokens=False) + [128009]
            + llama3.encode("Azərbaycanda.", add_special_tokens=False) + [128009])
    assert masked == want
    # the mask is two contiguous spans ending at each <|eot_id|> of an assistant turn
    spans = sum(1 for a, b in zip([0] + mask, mask) if b and not a)
    assert spans == 2
    prompt = llama3.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
