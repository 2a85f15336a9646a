"""Training a Llama-3-style byte-level BPE: round-trips, special tokens, the sweep, bad input.

A throwaway tokenizer is trained once per module on a few hundred shared-corpus documents
(about a second). Run: .venv/bin/python -m pytest -q tests/test_tokenizer_train.py
"""

from __future__ import annotations

import json
import logging

import pytest
from transformers import AutoTokenizer

from azllm.tokenizer.llama3 import LLAMA3_CHAT_TEMPLATE, LLAMA3_SPECIAL_TOKENS
from azllm.tokenizer.train import MIN_VOCAB_SIZE, train_sweep, train_tokenizer

VOCAB = 1500


@pytest.fixture(scope="module")
def corpus(shared_data):
    texts = []
    with open(shared_data / "az_corpus" / "train-00000.jsonl", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i % 20 == 0:
                texts.append(json.loads(line)["text"])
    with open(shared_data / "az_corpus_extra" / "train-00000.jsonl", encoding="utf-8") as f:
        texts += [json.loads(line)["text"] for line in list(f)[:60]]
    return texts


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("tok") / "bbpe"
    return train_tokenizer(corpus, vocab_size=VOCAB, out_dir=out, show_progress=False)


@pytest.fixture(scope="module")
def tok(trained):
    return AutoTokenizer.from_pretrained(str(trained.path))


def test_reaches_size_and_loads_with_autotokenizer(trained, tok):
    assert trained.vocab_size == trained.requested_vocab_size == VOCAB
    assert len(tok) == VOCAB
    assert tok.backend_tokenizer.model.ignore_merges
    assert tok.chat_template == LLAMA3_CHAT_TEMPLATE


def test_round_trips_every_training_document(corpus, tok):
    encs = tok.backend_tokenizer.encode_batch(corpus, add_special_tokens=False)
    for i, (text, enc) in enumerate(zip(corpus, encs)):
        assert tok.decode(enc.ids) == text, f"document {i} does not round-trip"
    assert tok.decode(tok.encode("Şəki, Gəncə; 2024-cü il!\n\tİ ı Ğ ğ 🙂")) == \
        "<|begin_of_text|>Şəki, Gəncə; 2024-cü il!\n\tİ ı Ğ ğ 🙂"


def test_special_tokens_follow_the_learned_vocab(tok):
    first = VOCAB - 256
    for name, meta_id in LLAMA3_SPECIAL_TOKENS.items():
        assert tok.convert_tokens_to_ids(name) == first + (meta_id - 128_000)
    assert tok.bos_token == "<|begin_of_text|>" and tok.eos_token == "<|end_of_text|>"
    assert tok.encode("salam")[0] == tok.bos_token_id
    # specials are never produced from text pieces, and the bytes come first
    assert tok.convert_ids_to_tokens(list(range(3))) == ["!", '"', "#"]
    ids = tok.encode("<|eot_id|>", add_special_tokens=False)
    assert ids == [first + 9]


def test_chat_template_assistant_mask(tok):
    msgs = [{"role": "user", "content": "Salam"}, {"role": "assistant", "content": "Əleykümsalam!"}]
    out = tok.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(masked) == "Əleykümsalam!<|eot_id|>"


def test_pre_tokenizer_is_llama3(tok):
    pieces = [p for p, _ in tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str("Bu 12345 il's!")]
    assert pieces == ["Bu", "Ġ", "123", "45", "Ġil", "'s", "!"]


def test_small_corpus_warns_and_reports_size(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="azllm.tokenizer.train"):
        res = train_tokenizer(["salam dünya"] * 50, vocab_size=5000, out_dir=tmp_path / "t", show_progress=False)
    assert res.vocab_size < 5000 and not res.reached_target
    assert res.vocab_size == len(AutoTokenizer.from_pretrained(str(res.path)))
    assert "supports only" in caplog.text and "5000" in caplog.text


def test_sweep_one_directory_per_size(corpus, tmp_path):
    calls = []

    def factory():
        calls.append(1)
        return iter(corpus[:100])

    results = train_sweep(factory, [900, 600], out_dir=tmp_path, show_progress=False)
    assert [r.requested_vocab_size for r in results] == [600, 900]
    assert [r.path.name for r in results] == ["bbpe-600", "bbpe-900"]
    assert len(calls) == 1  # one training at 900; 600 is cut from it (test_tokenizer_truncate.py)
    small, big = (AutoTokenizer.from_pretrained(str(r.path)) for r in results)
    text = corpus[0][:2000]
    assert len(big.encode(text)) < len(small.encode(text))


def test_retraining_replaces_a_tokenizer_but_not_other_files(tmp_path):
    first = train_tokenizer(["salam dünya"] * 50, vocab_size=600, out_dir=tmp_path / "t", show_progress=False)
    before = AutoTokenizer.from_pretrained(str(first.path)).get_vocab()
    again = train_tokenizer(["bir iki beş"] * 50, vocab_size=600, out_dir=first.path, show_progress=False)
    after = AutoTokenizer.from_pretrained(str(again.path)).get_vocab()
    assert "Ġiki" in after and "Ġiki" not in before and "salam" not in after
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]  # no temporary directory left behind
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="holds something other than a tokenizer"):
        train_tokenizer(["salam"] * 50, vocab_size=600, out_dir=tmp_path / "other", show_progress=False)
    assert (tmp_path / "other" / "notes.txt").read_text() == "keep me"


def test_empty_corpus_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="empty corpus"):
        train_tokenizer(iter(["", ""]), vocab_size=1000, out_dir=tmp_path, show_progress=False)


def test_vocab_smaller_than_bytes_plus_specials(tmp_path):
    with pytest.raises(ValueError, match=r"vocab_size=300 .*256-byte alphabet plus 256 special tokens = 512"):
        train_tokenizer(["salam"], vocab_size=300, out_dir=tmp_path, show_progress=False)
    assert MIN_VOCAB_SIZE == 512
    with pytest.raises(ValueError, match="vocab_size=100"):
        train_sweep(lambda: ["salam"], [1000, 100], out_dir=tmp_path, show_progress=False)
