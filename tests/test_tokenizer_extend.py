"""Continued BPE (`azllm.tokenizer.extend`): merges learned over the base tokenizer's output.

A hand-computed corpus fixes the merge order and the tie rule; on real Azerbaijani text
with the Llama 3 base (`ignore_merges=True`) the extended tokenizer must encode every
pre-token as an independent re-implementation of the merges says, keep base ids, merges and
specials, round-trip, and leave base-only text alone. Bad bases and too-small corpora fail
with clear errors. Also `azllm tokenizer extend`.

Run: .venv/bin/python -m pytest -q tests/test_tokenizer_extend.py
"""

from __future__ import annotations

import argparse
import json

import pytest
from tokenizers import Tokenizer, decoders, pre_tokenizers
from tokenizers.models import BPE, WordPiece
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from azllm.tokenizer import cli
from azllm.tokenizer.extend import (
    append_merges,
    byte_level_bpe_state,
    learn_continued_merges,
    merge_pair,
    new_token_ids,
    used_token_ids,
)
from azllm.tokenizer.llama3 import build_llama3_tokenizer
from azllm.tokenizer.strategies import build_arm_tokenizer

G = "Ġ"  # GPT-2's byte-level symbol for a space

HAND_CORPUS = ["abc abc abc xy xy"]
"""Pre-tokens (GPT-2 regex): "abc" x1, " abc" x2, " xy" x2."""


def _hand_base() -> PreTrainedTokenizerFast:
    """Bytes + one merge (a, b) -> "ab", plus "xy" in the vocabulary without a merge (never emitted)."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab["ab"] = len(vocab)
    vocab["xy"] = len(vocab)
    tok = Tokenizer(BPE(vocab, [("a", "b")]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def test_hand_computed_merges():
    # base segmentation: [ab, c] x1, [G, ab, c] x2, [G, x, y] x2
    # pairs: (ab,c)=3, (G,ab)=2, (G,x)=2, (x,y)=2
    # 1. (ab, c)=3 -> "abc"; now (G,abc)=2, (G,x)=2, (x,y)=2: ties go to the smaller strings,
    #    "x" < "Ġ" (U+0078 < U+0120): (x, y) first, but "xy" is already a base token: skipped
    # 2. (G, abc) ("abc" < "x") -> "Ġabc"   3. (G, x) -> "Ġx"   4. (Ġx, y) -> "Ġxy"
    base = _hand_base()
    learned = learn_continued_merges(base, HAND_CORPUS, 0, min_frequency=1)
    assert learned.merges == [("ab", "c"), (G, "abc"), (G, "x"), (G + "x", "y")]
    assert learned.num_merge_applications == [3, 2, 2, 2]
    assert learn_continued_merges(base, HAND_CORPUS, 0, min_frequency=3).merges == [("ab", "c")]

    backend, added = append_merges(base, learned.merges)
    ext = PreTrainedTokenizerFast(tokenizer_object=backend)
    first = len(base)
    assert added == ["abc", G + "abc", G + "x", G + "xy"]
    assert [ext.convert_tokens_to_ids(t) for t in added] == list(range(first, first + 4))
    assert ext.convert_tokens_to_ids("<|endoftext|>") == base.convert_tokens_to_ids("<|endoftext|>")
    ids = ext.encode("abc abc xy", add_special_tokens=False)
    assert ext.convert_ids_to_tokens(ids) == ["abc", G + "abc", G + "xy"]
    assert ext.decode(ids) == "abc abc xy"
    # "xy" has no merge in the base, and none was added: still two bytes
    assert ext.convert_ids_to_tokens(ext.encode("xy", add_special_tokens=False)) == ["x", "y"]
    assert used_token_ids(ext, ["abc xy"]) & set(range(first, first + 4)) == {first, first + 3}  # "abc", "Ġxy"


def test_too_many_tokens_says_how_many_the_corpus_supports():
    with pytest.raises(ValueError, match=r"supports only 4 new tokens .* min_frequency=1, not the requested 5"):
        learn_continued_merges(_hand_base(), HAND_CORPUS, 5, min_frequency=1)
    with pytest.raises(ValueError, match="empty corpus"):
        learn_continued_merges(_hand_base(), [], 5)


def test_non_byte_level_bases_are_refused():
    wp = Tokenizer(WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    with pytest.raises(ValueError, match="the base tokenizer is a WordPiece model"):
        learn_continued_merges(PreTrainedTokenizerFast(tokenizer_object=wp), HAND_CORPUS, 1)
    sp = Tokenizer(BPE({"a": 0, "▁": 1}, [], byte_fallback=True))
    sp.pre_tokenizer = pre_tokenizers.Metaspace()
    with pytest.raises(ValueError, match="BPE model with a Metaspace pre-tokenizer, not byte-level BPE"):
        byte_level_bpe_state(PreTrainedTokenizerFast(tokenizer_object=sp))


# ---------------------------------------------------------------------------
# Llama 3 base on real text
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def az(shared_data):
    with open(shared_data / "az_corpus" / "train-00000.jsonl", encoding="utf-8") as f:
        train = [json.loads(line)["text"] for i, line in enumerate(f) if i % 25 == 0]
    with open(shared_data / "az_eval_other_domain.jsonl", encoding="utf-8") as f:
        other = [json.loads(line)["text"] for line in f][:40]
    return train, other


@pytest.fixture(scope="module")
def llama_ext(az, tmp_path_factory):
    base = build_llama3_tokenizer()
    out = build_arm_tokenizer("extend", base=base, new=None, corpus=az[0], num_new_tokens=400,
                              out_dir=tmp_path_factory.mktemp("ext"))
    ext = AutoTokenizer.from_pretrained(str(out))
    base_merges = [merge_pair(m) for m in byte_level_bpe_state(base)["model"]["merges"]]
    ext_merges = [merge_pair(m) for m in byte_level_bpe_state(ext)["model"]["merges"]]
    assert ext_merges[:len(base_merges)] == base_merges, "base merges changed"
    return base, ext, ext_merges[len(base_merges):]


def _reference_segment(base_model, merges: list[tuple[str, str]], piece: str) -> list[str]:
    """Base segmentation, then each new merge in rank order, left to right (textbook BPE)."""
    seg = [t.value for t in base_model.tokenize(piece)]
    for a, b in merges:
        i, out = 0, []
        while i < len(seg):
            if i + 1 < len(seg) and seg[i] == a and seg[i + 1] == b:
                out.append(a + b)
                i += 2
            else:
                out.append(seg[i])
                i += 1
        seg = out
    return seg


def test_llama3_extended_encodes_every_pretoken_with_the_new_merges(llama_ext, az):
    base, ext, merges = llama_ext
    assert len(merges) == 400
    assert base.backend_tokenizer.model.ignore_merges and ext.backend_tokenizer.model.ignore_merges
    ext_vocab = ext.get_vocab()
    pre, model = ext.backend_tokenizer.pre_tokenizer, ext.backend_tokenizer.model
    pieces = sorted({p for t in az[0][:60] for p, _ in pre.pre_tokenize_str(t)})
    new_tokens = {a + b for a, b in merges}
    num_whole_new = 0
    for piece in pieces:
        got = [t.value for t in model.tokenize(piece)]
        if piece in ext_vocab:  # ignore_merges: a pre-token that is a token is that one token
            assert got == [piece]
            num_whole_new += piece in new_tokens
        else:
            assert got == _reference_segment(base.backend_tokenizer.model, merges, piece), piece
    assert num_whole_new > 50, "frequent words should have become single new tokens"


def test_llama3_extended_keeps_base_and_round_trips(llama_ext, az):
    base, ext, merges = llama_ext
    ext_vocab = ext.get_vocab()
    assert all(ext_vocab[t] == i for t, i in base.get_vocab().items()), "a base token changed id"
    assert [ext_vocab[a + b] for a, b in merges] == list(range(len(base), len(base) + 400))
    assert ext.all_special_tokens == base.all_special_tokens
    assert len(new_token_ids(ext, base)) == 400
    for text in az[1]:
        assert ext.decode(ext.encode(text, add_special_tokens=False)) == text
    other = "\n".join(az[1])
    assert len(ext.encode(other)) < 0.9 * len(base.encode(other))
    # base-only text: a pre-token with no new token in its encoding encodes exactly as the base
    english = "The quick brown fox jumps over the lazy dog in 2024; they're proud of it!"
    assert ext.encode(english) == base.encode(english)
    num_new_used = 0
    for text in az[1]:
        pieces = [text[s:e] for _, (s, e) in base.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)]
        for eb, ex in zip(base.backend_tokenizer.encode_batch(pieces, add_special_tokens=False),
                          ext.backend_tokenizer.encode_batch(pieces, add_special_tokens=False)):
            if all(i < len(base) for i in ex.ids):
                assert ex.ids == eb.ids
            else:
                num_new_used += 1
    assert num_new_used > 100


def test_most_new_merges_fire_on_the_training_text(llama_ext, az):
    base, ext, _ = llama_ext
    fired = used_token_ids(ext, az[0]) & new_token_ids(ext, base)
    assert len(fired) / 400 > 0.9, f"only {len(fired)} of 400 new tokens are emitted on the training text"


def test_cli_extend(az, tmp_path, capsys):
    base_dir = tmp_path / "base"
    _hand_base().save_pretrained(str(base_dir))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in az[0][:20]), encoding="utf-8")
    parser = argparse.ArgumentParser(prog="azllm")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["tokenizer", "extend", "--base", str(base_dir), "--corpus", str(corpus),
                              "--num-tokens", "50", "--out", str(tmp_path / "ext")])
    assert args.func(args) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    base_len = 259  # 256 bytes, "ab", "xy", <|endoftext|>
    assert row["new_tokens"] == 50 and row["base_vocab_size"] == base_len
    # + the Llama 3 chat specials every arm gets
    assert row["vocab_size"] == len(AutoTokenizer.from_pretrained(row["path"])) == base_len + 50 + 5
    args = parser.parse_args(["tokenizer", "extend", "--base", str(base_dir), "--corpus", str(corpus),
                              "--num-tokens", "10000000", "--out", str(tmp_path / "big")])
    with pytest.raises(ValueError, match=r"supports only \d+ new tokens"):
        args.func(args)
