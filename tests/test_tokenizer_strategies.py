"""Vocabulary strategies (CPT arms): baseline adds the chat specials, extend (continued BPE) keeps
every base id and encodes like the base wherever no new token applies, replace is the new tokenizer.

Bases: the rebuilt Llama 3 tokenizer and a GPT-2-style byte-level BPE (like SmolLM2's) trained
here. Run: .venv/bin/python -m pytest -q tests/test_tokenizer_strategies.py
"""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
from tokenizers.models import BPE
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from azllm.tokenizer.llama3 import (
    CHAT_SPECIAL_TOKENS,
    LLAMA3_CHAT_TEMPLATE,
    build_llama3_tokenizer,
)
from azllm.tokenizer.strategies import build_arm_tokenizer
from azllm.tokenizer.train import train_tokenizer

ENGLISH = ("The quick brown fox jumps over the lazy dog. In 2024, researchers at the university "
           "published 17 papers on tokenization; they're proud of it!\nNew line:\tindented 3.14159.")
MESSAGES = [{"role": "user", "content": "Bakı haradadır?"}, {"role": "assistant", "content": "Azərbaycanda."}]


@pytest.fixture(scope="module")
def az_texts(shared_data):
    with open(shared_data / "az_eval_other_domain.jsonl", encoding="utf-8") as f:
        other = [json.loads(line)["text"] for line in f][:60]
    with open(shared_data / "az_corpus" / "train-00000.jsonl", encoding="utf-8") as f:
        corpus = [json.loads(line)["text"] for i, line in enumerate(f) if i % 30 == 0]
    return other, corpus


@pytest.fixture(scope="module")
def new_tok(az_texts, tmp_path_factory):
    res = train_tokenizer(az_texts[1], vocab_size=1500, out_dir=tmp_path_factory.mktemp("new"),
                          show_progress=False)
    return AutoTokenizer.from_pretrained(str(res.path))


@pytest.fixture(scope="module")
def gpt2_style_base(tmp_path_factory):
    """A SmolLM2-like base: GPT-2 regex ByteLevel pre-tokenizer, <|endoftext|> special, own BOS/EOS."""
    tok = Tokenizer(BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=["<|endoftext|>", "<|im_start|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([ENGLISH.lower(), ENGLISH] * 20 + ["salam dünya necəsən"] * 5, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|endoftext|>")
    d = tmp_path_factory.mktemp("gpt2base")
    fast.save_pretrained(str(d))
    return AutoTokenizer.from_pretrained(str(d))


def test_extend_gpt2_style_base_adds_chat_specials(gpt2_style_base, az_texts, tmp_path):
    """Continued BPE on a SmolLM2-like base (the Llama 3 base: tests/test_tokenizer_extend.py)."""
    base = gpt2_style_base
    out = build_arm_tokenizer("extend", base=base, new=None, corpus=az_texts[1], out_dir=tmp_path / "extend",
                              num_new_tokens=0)
    ext = AutoTokenizer.from_pretrained(str(out))
    base_vocab, ext_vocab = base.get_vocab(), ext.get_vocab()
    assert all(ext_vocab[t] == i for t, i in base_vocab.items())
    n_added = len(ext) - len(base) - len(CHAT_SPECIAL_TOKENS)
    assert n_added > 2000, "num_new_tokens=0 should learn every merge the corpus supports"
    assert ext.encode(ENGLISH, add_special_tokens=False) == base.encode(ENGLISH, add_special_tokens=False)
    other = "\n".join(az_texts[0])
    assert ext.decode(ext.encode(other, add_special_tokens=False)) == other
    assert len(ext.encode(other)) < 0.7 * len(base.encode(other))
    # chat specials come after the new tokens and the template masks the assistant turn
    ids = ext.convert_tokens_to_ids(list(CHAT_SPECIAL_TOKENS))
    assert min(ids) == len(base) + n_added
    mask_out = ext.apply_chat_template(MESSAGES, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    masked = [i for i, m in zip(mask_out["input_ids"], mask_out["assistant_masks"]) if m]
    assert ext.decode(masked) == "Azərbaycanda.<|eot_id|>"


def test_baseline_adds_missing_chat_specials_only(gpt2_style_base, tmp_path):
    base = gpt2_style_base
    out = build_arm_tokenizer("baseline", base=base, new=None, out_dir=tmp_path / "baseline")
    tok = AutoTokenizer.from_pretrained(str(out))
    assert len(tok) == len(base) + len(CHAT_SPECIAL_TOKENS)
    assert sorted(tok.convert_tokens_to_ids(list(CHAT_SPECIAL_TOKENS))) == list(range(len(base), len(tok)))
    assert tok.encode(ENGLISH) == base.encode(ENGLISH)
    text = tok.apply_chat_template(MESSAGES, tokenize=False)
    assert text.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>")
    ids = tok.apply_chat_template(MESSAGES, tokenize=True, return_dict=True)["input_ids"]
    assert tok.convert_tokens_to_ids("<|eot_id|>") in ids

    llama = build_llama3_tokenizer()
    out = build_arm_tokenizer("baseline", base=llama, new=None, out_dir=tmp_path / "llama")
    same = AutoTokenizer.from_pretrained(str(out))
    assert len(same) == len(llama) and same.get_vocab() == llama.get_vocab()


def test_replace_is_the_new_tokenizer(new_tok, gpt2_style_base, tmp_path):
    out = build_arm_tokenizer("replace", base=gpt2_style_base, new=new_tok, out_dir=tmp_path / "replace")
    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok.get_vocab() == new_tok.get_vocab()
    assert tok.chat_template == LLAMA3_CHAT_TEMPLATE


def test_bad_strategy_and_missing_new(gpt2_style_base, tmp_path):
    with pytest.raises(ValueError, match=r"unknown tokenizer strategy 'merge'.*baseline"):
        build_arm_tokenizer("merge", base=gpt2_style_base, new=None, out_dir=tmp_path)
    with pytest.raises(ValueError, match="strategy 'replace' needs the new tokenizer"):
        build_arm_tokenizer("replace", base=gpt2_style_base, new=None, out_dir=tmp_path)
    with pytest.raises(ValueError, match="strategy 'extend' needs a corpus"):
        build_arm_tokenizer("extend", base=gpt2_style_base, new=None, out_dir=tmp_path)
