"""A sweep's smaller tokenizers cut from its largest training equal separate trainings.

Real BPE trainings on a ~1 MB slice of the shared corpus (about a second each); held-out
text is the shared validation and other-domain files.
Run: .venv/bin/python -m pytest -q tests/test_tokenizer_truncate.py
"""

from __future__ import annotations

import json

import pytest
from tokenizers import trainers
from transformers import AutoTokenizer

from azllm.tokenizer.train import bpe_trainer, derive_tokenizer, plan_sweep, train_sweep, train_tokenizer
from azllm.tokenizer.truncate import can_truncate


def _read(path, every: int = 1) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for i, line in enumerate(f) if i % every == 0]


@pytest.fixture(scope="module")
def corpus(shared_data):
    return _read(shared_data / "az_corpus" / "train-00000.jsonl", every=10)


@pytest.fixture(scope="module")
def held_out(shared_data):
    return (_read(shared_data / "az_corpus" / "validation.jsonl")
            + _read(shared_data / "az_eval_other_domain.jsonl"))


@pytest.fixture(scope="module")
def separate(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("separate")
    return {v: train_tokenizer(corpus, vocab_size=v, out_dir=out / f"bbpe-{v}", show_progress=False)
            for v in (1000, 600)}


def _spec(trained) -> dict:
    return json.loads((trained.path / "tokenizer.json").read_text(encoding="utf-8"))


def test_derived_600_equals_trained_600(separate, held_out, tmp_path):
    derived = derive_tokenizer(separate[1000], vocab_size=600, out_dir=tmp_path / "bbpe-600")
    want, got = _spec(separate[600]), _spec(derived)
    assert derived.vocab_size == separate[600].vocab_size == 600
    assert len(got["model"]["merges"]) == len(want["model"]["merges"]) == 600 - 256 - 256
    assert got["model"]["vocab"] == want["model"]["vocab"]
    assert got["model"]["merges"] == want["model"]["merges"]
    assert got == want  # specials, post-processor, pre-tokenizer and decoder too
    a, b = (AutoTokenizer.from_pretrained(str(t.path)) for t in (separate[600], derived))
    assert [e.ids for e in a.backend_tokenizer.encode_batch(held_out)] == \
        [e.ids for e in b.backend_tokenizer.encode_batch(held_out)]
    # and the cut is a real one: the 1000-token tokenizer encodes the same text differently
    big = AutoTokenizer.from_pretrained(str(separate[1000].path))
    assert big(held_out[0])["input_ids"] != a(held_out[0])["input_ids"]


def test_sweep_trains_once_and_matches_separate_trainings(corpus, separate, tmp_path):
    calls = []

    def factory():
        calls.append(1)
        return iter(corpus)

    results = train_sweep(factory, [600, 1000], out_dir=tmp_path, show_progress=False)
    assert len(calls) == 1
    assert [r.path.name for r in results] == ["bbpe-600", "bbpe-1000"]
    for r in results:
        assert _spec(r) == _spec(separate[r.requested_vocab_size])


def test_a_corpus_that_runs_out_of_pairs_cuts_the_same(corpus, tmp_path):
    small = corpus[:20]
    sep = train_tokenizer(small, vocab_size=900, min_frequency=40, out_dir=tmp_path / "sep", show_progress=False)
    big = train_tokenizer(small, vocab_size=1000, min_frequency=40, out_dir=tmp_path / "big", show_progress=False)
    assert big.vocab_size < 900, "the corpus should stop both trainings before 900 tokens"
    cut = derive_tokenizer(big, vocab_size=900, out_dir=tmp_path / "cut")
    assert _spec(cut) == _spec(sep) and cut.vocab_size == sep.vocab_size


def test_only_equal_settings_truncate():
    assert can_truncate(bpe_trainer(1000), bpe_trainer(600))
    assert not can_truncate(bpe_trainer(600), bpe_trainer(1000))
    assert not can_truncate(bpe_trainer(1000, min_frequency=2), bpe_trainer(600, min_frequency=3))
    limited = trainers.BpeTrainer(vocab_size=344, initial_alphabet=bpe_trainer(600).initial_alphabet,
                                  special_tokens=[], limit_alphabet=100)
    assert not can_truncate(bpe_trainer(1000), limited)
    assert plan_sweep([600, 1000, 800]) == {1000: [800, 600]}
