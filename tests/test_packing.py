"""pack_corpus: EOS after every document, exact block cutting, cache hits, clear errors;
document_position_ids / document_causal_mask restart at document boundaries.

A throwaway byte-level BPE tokenizer trained in a module fixture; corpora are
written to tmp. Seconds on CPU.

    .venv/bin/python -m pytest -q tests/test_packing.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from azllm.data.packing import (
    document_causal_mask,
    document_position_ids,
    load_blocks,
    pack_corpus,
    read_packed,
)

BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
DOCS = [
    "Azərbaycan Respublikasının paytaxtı Bakı şəhəridir.",
    "Yeni bir dil öyrənmək ünsiyyət imkanlarını genişləndirir.",
    "Mobil internet paketimi necə aktivləşdirə bilərəm?",
    "Qanunvericilik aktları rəsmi dildə dərc olunur.",
    "Xəzər dənizi dünyanın ən böyük qapalı su hövzəsidir.",
] * 4


def save_tokenizer(out: Path, *, with_eos: bool = True) -> Path:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=[BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(DOCS, trainer)
    kwargs = {"bos_token": BOS, "eos_token": EOS} if with_eos else {"bos_token": BOS}
    PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    return save_tokenizer(tmp_path_factory.mktemp("tok"))


def write_jsonl(path: Path, docs: list[str]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"id": i, "text": d}, ensure_ascii=False) + "\n" for i, d in enumerate(docs))
    return path


def test_blocks_are_documents_joined_by_eos(tokenizer_dir, tmp_path):
    tok = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir)
    docs = [f"{i}: {d}" for i, d in enumerate(DOCS)] + ["   "]  # a blank document is skipped
    corpus = write_jsonl(tmp_path / "corpus.jsonl", docs)

    packed = pack_corpus(corpus, tokenizer_dir, block_size=32, cache_root=tmp_path / "cache")

    expected = []
    for d in docs[:-1]:
        expected += tok.encode(d, add_special_tokens=False) + [tok.eos_token_id]
    assert packed.num_documents == len(docs) - 1
    assert packed.num_tokens == len(expected)
    assert packed.num_blocks == len(expected) // 32 and packed.block_size == 32
    assert packed.tokens_dropped == len(expected) % 32
    blocks = load_blocks(packed)
    assert blocks.shape == (packed.num_blocks, 32) and blocks.dtype == np.int32
    # the blocks are exactly the stream of documents + EOS, cut in order, tail dropped
    assert blocks.reshape(-1).tolist() == expected[: packed.num_blocks * 32]
    assert tok.bos_token_id not in blocks, "no BOS inside packed blocks"
    # decoding the stream: documents separated by EOS, none bleeding into another
    text = tok.decode(blocks.reshape(-1).tolist())
    pieces = text.split(EOS)
    assert pieces[: len(pieces) - 1] == docs[: len(pieces) - 1]
    assert docs[len(pieces) - 1].startswith(pieces[-1])


def test_second_call_is_a_cache_hit(tokenizer_dir, tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", DOCS)
    first = pack_corpus(corpus, tokenizer_dir, block_size=16, cache_root=tmp_path / "cache")
    mtime = first.path.stat().st_mtime_ns
    second = pack_corpus(corpus, tokenizer_dir, block_size=16, cache_root=tmp_path / "cache")
    assert not first.from_cache and second.from_cache
    assert second.path == first.path and second.path.stat().st_mtime_ns == mtime
    assert second.to_dict() == {**first.to_dict(), "from_cache": True}
    # nothing half-written is left beside the cache
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [first.path.parent.name]
    # a different block size or changed data is a new entry
    other = pack_corpus(corpus, tokenizer_dir, block_size=8, cache_root=tmp_path / "cache")
    assert not other.from_cache and other.path != first.path
    write_jsonl(corpus, DOCS + ["Bir sənəd daha."])
    changed = pack_corpus(corpus, tokenizer_dir, block_size=16, cache_root=tmp_path / "cache")
    assert not changed.from_cache and changed.num_tokens > first.num_tokens


def test_num_proc_gives_the_same_blocks(tokenizer_dir, tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", DOCS * 3)
    one = pack_corpus(corpus, tokenizer_dir, block_size=16, cache_root=tmp_path / "a")
    two = pack_corpus(corpus, tokenizer_dir, block_size=16, num_proc=2, cache_root=tmp_path / "b")
    np.testing.assert_array_equal(load_blocks(one), load_blocks(two))


def test_read_packed_gives_back_the_packed_directory(tokenizer_dir, tmp_path):
    """What the CPT steps read from the `packed` reference (a copy of the directory)."""
    import shutil

    packed = pack_corpus(write_jsonl(tmp_path / "corpus.jsonl", DOCS), tokenizer_dir, block_size=16,
                         cache_root=tmp_path / "cache")
    copy = Path(shutil.copytree(packed.path.parent, tmp_path / "loaded"))
    got = read_packed(copy)
    assert got.to_dict() == {**packed.to_dict(), "path": str(copy / "blocks.npy")}
    np.testing.assert_array_equal(load_blocks(got), load_blocks(packed))
    (copy / "meta.json").write_text(json.dumps({"num_blocks": 1}))
    with pytest.raises(ValueError, match=r"meta.json lacks \['block_size'.*pack the corpus again"):
        read_packed(copy)
    with pytest.raises(FileNotFoundError, match="not written by pack_corpus .*pack_arm step"):
        read_packed(tmp_path)


def test_too_short_corpus_and_missing_eos(tokenizer_dir, tmp_path):
    corpus = write_jsonl(tmp_path / "short.jsonl", ["Salam."])
    with pytest.raises(ValueError, match=r"\d+ tokens .* shorter than one block of block_size=4096"):
        pack_corpus(corpus, tokenizer_dir, block_size=4096, cache_root=tmp_path / "cache")
    assert not any((tmp_path / "cache").iterdir()), "a failed pack must not leave a cache entry"
    no_eos = save_tokenizer(tmp_path / "no_eos", with_eos=False)
    with pytest.raises(ValueError, match="no eos_token"):
        pack_corpus(corpus, no_eos, block_size=4, cache_root=tmp_path / "cache")


def test_document_positions_and_mask_restart_after_eos():
    eos = 9
    block = torch.tensor([[5, 6, eos, 7, 8, 8, eos, 1],
                          [eos, 2, 3, 4, 5, 6, 7, 8]])
    pos = document_position_ids(block, eos)
    assert pos.tolist() == [[0, 1, 2, 0, 1, 2, 3, 0],
                            [0, 0, 1, 2, 3, 4, 5, 6]]
    assert document_position_ids(block[0], eos).tolist() == pos[0].tolist()
    mask = document_causal_mask(block, eos)
    assert mask.shape == (2, 8, 8)
    assert mask[0, 4].tolist() == [False, False, False, True, True, False, False, False]
    assert mask[0, 2, :3].all() and not mask[0, 3, 2], "EOS belongs to the document it closes"
    assert torch.equal(mask[1, 1:, 1:], torch.ones(7, 7, dtype=torch.bool).tril())
