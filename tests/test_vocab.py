"""adapt_vocabulary: copied rows, FVT means, mean/random inits, padding, tied and untied heads.

Two throwaway byte-level BPE tokenizers (an "English" base, an Azerbaijani new one)
trained in a module fixture, tiny random Llamas (2 layers, hidden 32). Seconds on CPU.

    .venv/bin/python -m pytest -q tests/test_vocab.py
"""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from azllm.model.load import load_model
from azllm.model.vocab import adapt_vocabulary

SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"]
BASE_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "A language model predicts the next token from the previous ones.",
    "Training data should be clean, diverse and large enough.",
] * 20
AZ_TEXT = [
    "Azərbaycan Respublikasının paytaxtı Bakı şəhəridir.",
    "Yeni bir dil öyrənmək ünsiyyət imkanlarını genişləndirir.",
    "Mobil internet paketimi necə aktivləşdirə bilərəm?",
    "Qanunvericilik aktları rəsmi dildə dərc olunur.",
    "öz üz çay ödə üç çox öyrən ürək çörək ölkə üzüm çəki",
] * 20


def train_tokenizer(texts: list[str], vocab_size: int, specials: list[str] = SPECIALS,
                    **special_kwargs) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **special_kwargs)


def with_specials(texts, vocab_size):
    return train_tokenizer(texts, vocab_size, bos_token=SPECIALS[0], eos_token=SPECIALS[1], pad_token=SPECIALS[2])


@pytest.fixture(scope="module")
def base_tok():
    return with_specials(BASE_TEXT, 300)


@pytest.fixture(scope="module")
def new_tok():
    return with_specials(AZ_TEXT, 420)


@pytest.fixture(scope="module")
def big_tok():
    return with_specials(AZ_TEXT + BASE_TEXT, 700)


def tiny_llama(vocab_size: int, *, tied: bool) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      tie_word_embeddings=tied)
    model = LlamaForCausalLM(cfg)
    if not tied:  # make the head clearly different from the embeddings
        model.lm_head.weight.data.normal_(0, 1.0)
    return model


def independent_expectations(base_tok, new_tok, base_weight):
    """Per new id, the expected row, computed without the library's code paths."""
    base_vocab = base_tok.get_vocab()
    mean = base_weight.mean(0)
    expected, kind = {}, {}
    for new_id in range(len(new_tok)):
        token = new_tok.convert_ids_to_tokens(new_id)
        if token in base_vocab:
            expected[new_id], kind[new_id] = base_weight[base_vocab[token]], "copy"
        elif token in new_tok.all_special_tokens:
            expected[new_id], kind[new_id] = mean, "special"
        else:
            text = new_tok.decode([new_id])
            if "\ufffd" in text:  # partial UTF-8 byte token: checked separately
                continue
            ids = base_tok.encode(text, add_special_tokens=False)
            expected[new_id], kind[new_id] = base_weight[ids].mean(0), "fvt"
    return expected, kind


@pytest.mark.parametrize("shrink", [False, True], ids=["grow", "shrink"])
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_fvt_rows_match_independent_means(base_tok, new_tok, tied, shrink, tmp_path, request):
    if shrink:  # the new vocabulary is smaller than the base one (replace with a small tokenizer)
        base_tok, new_tok = request.getfixturevalue("big_tok"), base_tok
        assert len(base_tok) > 320 >= len(new_tok)
    model = tiny_llama(len(base_tok), tied=tied)
    base_in = model.get_input_embeddings().weight.detach().clone()
    base_out = model.get_output_embeddings().weight.detach().clone()

    stats = adapt_vocabulary(model, base_tok, new_tok, init="fvt")

    padded = stats["padded_vocab_size"]
    assert padded % 64 == 0 and padded >= len(new_tok) > padded - 64
    assert model.config.vocab_size == padded
    inp, out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert inp.shape == (padded, 32) and out.shape == (padded, 32)
    assert (out is inp) == tied, "tying must be preserved"

    exp_in, kind = independent_expectations(base_tok, new_tok, base_in)
    exp_out, _ = independent_expectations(base_tok, new_tok, base_out)
    assert "fvt" in kind.values() and "copy" in kind.values()
    for new_id, row in exp_in.items():
        torch.testing.assert_close(inp[new_id], row, msg=f"input row {new_id} ({kind[new_id]})")
        if not tied:
            torch.testing.assert_close(out[new_id], exp_out[new_id], msg=f"head row {new_id} ({kind[new_id]})")
    # merged tokens that are partial UTF-8 (decode gives U+FFFD): mean of their bytes' base rows.
    # A two-byte token absent from the base vocabulary encodes as its two single bytes there.
    base_vocab = base_tok.get_vocab()
    partial = [i for i in range(len(new_tok)) if "\ufffd" in new_tok.decode([i])
               and new_tok.convert_ids_to_tokens(i) not in base_vocab
               and len(new_tok.convert_ids_to_tokens(i)) == 2]
    assert partial or shrink, "fixture should produce merged partial-UTF-8 tokens"
    for new_id in partial:
        byte_ids = [base_vocab[c] for c in new_tok.convert_ids_to_tokens(new_id)]
        torch.testing.assert_close(inp[new_id], base_in[byte_ids].mean(0), msg=f"partial-byte row {new_id}")
    # padding rows are the base mean
    torch.testing.assert_close(inp[len(new_tok):], base_in.mean(0).expand(padded - len(new_tok), -1))
    assert stats["num_copied"] == sum(k == "copy" for k in kind.values())
    assert stats["num_copied"] + stats["num_new"] == len(new_tok)
    assert stats["num_fvt"] + stats["num_fallback"] == stats["num_new"]

    # the model still runs, with the new ids in the config
    assert model.config.eos_token_id == new_tok.eos_token_id
    assert model.generation_config.pad_token_id == new_tok.pad_token_id
    ids = torch.tensor([new_tok.encode("Bakı şəhəridir.")])
    logits = model(input_ids=ids).logits
    assert logits.shape[-1] == padded and torch.isfinite(logits).all()

    # saved and reloaded: no re-initialisation, tying as before
    model.save_pretrained(tmp_path)
    reloaded = load_model(tmp_path)
    assert (reloaded.get_output_embeddings().weight is reloaded.get_input_embeddings().weight) == tied
    torch.testing.assert_close(reloaded.get_input_embeddings().weight, inp)
    torch.testing.assert_close(reloaded.get_output_embeddings().weight, out)
    torch.testing.assert_close(reloaded(input_ids=ids).logits, logits)


def test_extend_keeps_base_rows_by_id(base_tok):
    extended = with_specials(BASE_TEXT, 300)
    added = extended.add_tokens(["Azərbaycan", "şəhəridir"])
    assert added == 2 and len(extended) == len(base_tok) + 2
    model = tiny_llama(len(base_tok), tied=True)
    base_in = model.get_input_embeddings().weight.detach().clone()

    stats = adapt_vocabulary(model, base_tok, extended, init="fvt")

    inp = model.get_input_embeddings().weight
    torch.testing.assert_close(inp[: len(base_tok)], base_in)
    assert stats["num_copied"] == len(base_tok) and stats["num_fvt"] == 2
    new_id = extended.convert_tokens_to_ids("Azərbaycan")
    torch.testing.assert_close(inp[new_id], base_in[base_tok.encode("Azərbaycan")].mean(0))


def test_mean_and_random_inits(base_tok, new_tok):
    ref = tiny_llama(len(base_tok), tied=True)
    base_in = ref.get_input_embeddings().weight.detach().clone()
    _, kind = independent_expectations(base_tok, new_tok, base_in)
    fvt_ids = [i for i, k in kind.items() if k == "fvt"]
    copy_ids = [i for i, k in kind.items() if k == "copy"]

    model = tiny_llama(len(base_tok), tied=True)
    stats = adapt_vocabulary(model, base_tok, new_tok, init="mean")
    w = model.get_input_embeddings().weight
    assert stats["num_mean"] == stats["num_new"] - stats["num_fallback"] > 0
    torch.testing.assert_close(w[fvt_ids], base_in.mean(0).expand(len(fvt_ids), -1))
    torch.testing.assert_close(w[copy_ids], base_in[[base_tok.convert_tokens_to_ids(
        new_tok.convert_ids_to_tokens(i)) for i in copy_ids]])

    rows = []
    for _ in range(2):  # seeded: the same rows twice
        model = tiny_llama(len(base_tok), tied=True)
        stats = adapt_vocabulary(model, base_tok, new_tok, init="random", seed=7)
        rows.append(model.get_input_embeddings().weight[fvt_ids].clone())
    assert stats["num_random"] > 0
    torch.testing.assert_close(rows[0], rows[1])
    std = rows[0].std().item()
    assert 0.01 < std < 0.04, f"random rows should have std ~ initializer_range 0.02, got {std}"


def test_missing_special_tokens_is_a_clear_error(base_tok):
    no_eos = train_tokenizer(AZ_TEXT, 350, specials=SPECIALS[:1], bos_token=SPECIALS[0])
    model = tiny_llama(len(base_tok), tied=True)
    with pytest.raises(ValueError, match="no eos_token"):
        adapt_vocabulary(model, base_tok, no_eos)
    no_specials = train_tokenizer(AZ_TEXT, 350, specials=[])
    with pytest.raises(ValueError, match="no bos_token and no eos_token"):
        adapt_vocabulary(model, base_tok, no_specials)
    with pytest.raises(ValueError, match="init='bogus'"):
        adapt_vocabulary(model, base_tok, base_tok, init="bogus")
