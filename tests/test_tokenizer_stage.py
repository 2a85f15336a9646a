"""Loading tokenizers, metrics against an independent count, the flow's tokenizer stage and the CLI.

Run: .venv/bin/python -m pytest -q tests/test_tokenizer_stage.py
"""

from __future__ import annotations

import argparse
import json
import unicodedata

import pytest
from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
from tokenizers.models import BPE
from transformers import PreTrainedTokenizerFast

from azllm.config import ConfigError, TokenizerConfig
from azllm.data.layout import PreparedData
from azllm.report.plots import plot_fertility
from azllm.tokenizer import cli
from azllm.tokenizer.load import load_tokenizer
from azllm.tokenizer.metrics import (
    CONTEXT_TOKENS,
    cap_texts,
    fertility_table,
    tokenizer_metrics,
)
from azllm.tokenizer.stage import run_tokenizer_stage


@pytest.fixture(scope="module")
def small_files(shared_data, tmp_path_factory):
    """A prepared-data directory (azllm.data.layout): validation.jsonl is train.jsonl again (~0.3 MB, so
    fertility_max_mb=0.1 caps it), other_domain.jsonl 40 news documents."""
    d = tmp_path_factory.mktemp("data")
    with open(shared_data / "az_corpus" / "train-00000.jsonl", encoding="utf-8") as f:
        train = [line for i, line in enumerate(f) if i % 40 == 0]
    with open(shared_data / "az_eval_other_domain.jsonl", encoding="utf-8") as f:
        other = list(f)[:40]
    (d / "train.jsonl").write_text("".join(train), encoding="utf-8")
    (d / "validation.jsonl").write_text("".join(train), encoding="utf-8")
    (d / "other_domain.jsonl").write_text("".join(other), encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    tok = Tokenizer(BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["the base model speaks English, mostly. salam"] * 10, trainer=trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    d = tmp_path_factory.mktemp("gpt2")
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>").save_pretrained(str(d))
    return d


def test_metrics_match_an_independent_count(gpt2_dir):
    tok = load_tokenizer(str(gpt2_dir))
    texts = ["Salam dünya!\nBu gün hava gözəldir.", "Ş" + "ə" * 3 + " ok"]
    m = tokenizer_metrics(tok, iter(texts))
    tokens = sum(len(tok.encode(t, add_special_tokens=False)) for t in texts)
    words = sum(len(unicodedata.normalize("NFC", t).split()) for t in texts)
    nbytes = sum(len(t.encode()) for t in texts)
    assert (m["tokens"], m["words"], m["bytes"]) == (tokens, words, nbytes)
    assert m["fertility"] == pytest.approx(tokens / words)
    assert m["bytes_per_token"] == pytest.approx(nbytes / tokens)
    assert m["words_per_context"] == pytest.approx(CONTEXT_TOKENS * words / tokens)
    forms = ["Salam", " dünya!", "Bu", " gün", " hava", " gözəldir.", "Şəəə", " ok"]
    split3 = sum(len(tok.encode(w, add_special_tokens=False)) >= 3 for w in forms)
    assert m["share_words_3plus_tokens"] == pytest.approx(split3 / len(forms))
    with pytest.raises(ValueError, match="no words to measure"):
        tokenizer_metrics(tok, ["  "])


def test_fertility_table_and_chart(gpt2_dir, tmp_path):
    tok = load_tokenizer(str(gpt2_dir))
    df = fertility_table({"a": tok, "b": tok}, ["salam dünya", "bir iki üç"])
    assert list(df["tokenizer"]) == ["a", "b"] and {"fertility", "words_per_context"} <= set(df.columns)
    fig = plot_fertility(df)
    assert [len(ax.patches) for ax in fig.axes[:2]] == [2, 2], "one bar per tokenizer in each panel"
    fig.savefig(tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_cap_texts_stops_at_the_budget():
    texts = ["ə" * 300_000, "b" * 500_000, "c" * 10]  # 0.6 MB, 0.5 MB, 10 bytes
    assert cap_texts(iter(texts), 1.0) == (texts[:1], True)
    assert cap_texts(texts, 0) == (texts, False)
    assert cap_texts(texts, 0.1) == (texts[:1], True)  # at least one document
    assert cap_texts(texts, 2.0) == (texts, False)
    with pytest.raises(ConfigError, match="fertility_max_mb must be >= 0"):
        TokenizerConfig(fertility_max_mb=-1)


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(ValueError, match=r"tokenizer directory /no/such/tokenizer does not exist"):
        load_tokenizer("/no/such/tokenizer")
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "tokenizer.json").write_text("{not json")
    (bad / "tokenizer_config.json").write_text("{}")
    with pytest.raises(ValueError, match=f"tokenizer directory {bad} could not be read"):
        load_tokenizer(str(bad))
    offline = (r"cannot load tokenizer 'nobody/no-such-tokenizer': "
               r"the Hugging Face hub is switched off here \(HF_HUB_OFFLINE\)")
    with pytest.raises(ValueError, match=offline):
        load_tokenizer("nobody/no-such-tokenizer")


def test_llama_aliases_load_the_same_tokenizer():
    assert len(load_tokenizer("llama3")) == len(load_tokenizer("llama-3.2")) == 128_256


def test_run_tokenizer_stage(small_files, gpt2_dir, tmp_path):
    cfg = TokenizerConfig(vocab_size=1200, sweep=(800,), min_frequency=2, reference="llama-3.2",
                          extend_num_tokens=100, fertility_max_mb=0.1)
    res = run_tokenizer_stage(cfg, base_tokenizer=str(gpt2_dir), arms=("baseline", "extend", "replace"),
                              data=PreparedData.at(small_files), out_dir=tmp_path / "stage")
    assert set(res.arm_tokenizers) == {"baseline", "extend", "replace"}
    assert res.vocab_size_reached == 1200
    base_len = len(load_tokenizer(str(gpt2_dir)))
    assert len(load_tokenizer(res.arm_tokenizers["extend"])) == base_len + 100 + 5
    assert len(load_tokenizer(res.arm_tokenizers["replace"])) == 1200
    names = {r["tokenizer"] for r in res.table}
    assert names == {"bbpe-800", "bbpe-1200", "reference:llama-3.2", f"base:{gpt2_dir}", "arm:baseline",
                     "arm:extend"}
    assert len(res.table) == 2 * len(names)
    fert = {(r["tokenizer"], r["data"]): r["fertility"] for r in res.table}
    assert fert[("bbpe-1200", "validation")] < fert[("bbpe-800", "validation")]
    assert (tmp_path / "stage" / "fertility.csv").is_file()
    # the validation file (~0.3 MB) is cut at fertility_max_mb=0.1, the other-domain one (40 documents) is not
    sample = {r["data"]: (r["documents"], r["bytes"], r["capped"]) for r in res.table}
    num_train = len((small_files / "train.jsonl").read_text(encoding="utf-8").splitlines())
    assert sample["other_domain"] == (40, sample["other_domain"][1], False)
    assert (sample["validation"][0] < num_train and sample["validation"][1] <= 100_000
            and sample["validation"][2] is True)
    assert json.loads((tmp_path / "stage" / "fertility.json").read_text()) == res.table


def test_cli_train_and_eval(small_files, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="azllm")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["tokenizer", "train", "--corpus", str(small_files / "train.jsonl"),
                              "--vocab-size", "700", "--min-frequency", "2", "--out", str(tmp_path)])
    assert args.func(args) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert trained["vocab_size"] == 700 and (tmp_path / "bbpe-700" / "tokenizer.json").is_file()
    args = parser.parse_args(["tokenizer", "eval", "--tokenizer", str(tmp_path / "bbpe-700"), "llama-3.2",
                              "--data", str(small_files / "other_domain.jsonl"), "--json"])
    assert args.func(args) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["name"] for r in rows] == [str(tmp_path / "bbpe-700"), "llama-3.2"]
    assert {"fertility", "bytes_per_token", "words_per_context", "vocab_size"} <= set(rows[0])
    assert rows[1]["vocab_size"] == 128_256


def test_model_directory_tokenizer_is_checked_against_the_arms(gpt2_dir, tmp_path):
    """join_cpt's check: a CPT model directory holds the arm's tokenizer as adapt_base_model re-saves it
    (equal); another vocabulary, or none, is an error naming the directory and what differs."""
    from transformers import AutoTokenizer

    from azllm.tokenizer.load import check_model_tokenizer

    AutoTokenizer.from_pretrained(gpt2_dir).save_pretrained(tmp_path / "model")  # as adapt_base_model saves it
    check_model_tokenizer(tmp_path / "model", gpt2_dir, what="arm 'extend'")
    other = AutoTokenizer.from_pretrained(gpt2_dir)
    other.add_tokens(["salamlar"])
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match=r"arm 'extend': the tokenizer saved in .*other is not the arm's tokenizer "
                                         r".*\(vocabulary, added tokens differ\)"):
        check_model_tokenizer(tmp_path / "other", gpt2_dir, what="arm 'extend'")
    (tmp_path / "bare").mkdir()
    with pytest.raises(ValueError, match=r"bare has no tokenizer\.json"):
        check_model_tokenizer(tmp_path / "bare", gpt2_dir, what="arm 'extend'")
