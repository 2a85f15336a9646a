"""Evaluation: BPB against a one-document-at-a-time reference, windows, repetition and chrF on
hand-made examples, fixed-length generation, the model comparison report and `azllm eval bpb`.

Tiny random Llama (2 layers, hidden 32) on the project's byte-level BPE; about 20 s on CPU.

    .venv/bin/python -m pytest -q tests/test_eval.py
"""

from __future__ import annotations

import argparse
import json
import math
import unicodedata

import pytest
import torch
from test_sft import (  # shared tiny fixtures
    SFT_DIR,
    build_tiny_llama,
    build_tiny_tokenizer,
)

from azllm.config import EvalConfig
from azllm.data.sft import read_chat_messages
from azllm.eval.bpb import evaluate_bpb, evaluate_bpb_files, read_texts, score_windows
from azllm.eval.generation import (
    aggregate_repetition,
    generate_samples,
    greedy_generate,
    prompt_ids,
    repetition_metrics,
)
from azllm.eval.report import ModelSpec, evaluate_models
from azllm.eval.scores import answer_questions, chrf, reference_answers
from azllm.tokenizer.load import load_tokenizer as load_tokenizer_dir

OTHER_DOMAIN = SFT_DIR.parent / "az_eval_other_domain.jsonl"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("tiny_eval")
    tokenizer = build_tiny_tokenizer(root / "tokenizer", num_lines=200)
    build_tiny_llama(root / "model", len(tokenizer), seed=1)
    model = AutoModelForCausalLM.from_pretrained(root / "model", dtype=torch.float32).eval()
    return model, tokenizer, root


@pytest.fixture(scope="module")
def documents():
    """Real news documents cut to varied lengths (a few to a few hundred tokens), plus an NFD one."""
    texts = read_texts(OTHER_DOMAIN)[:6]
    cut = [t[:n] for t, n in zip(texts, (40, 900, 250, 1300, 5, 600), strict=True)]
    return cut + [unicodedata.normalize("NFD", "Azərbaycan dili, Şəki, Gəncə")]


def reference_bpb(model, tokenizer, texts):
    """One document at a time, whole, no padding, BOS in front: the definition, literally."""
    nats, num_bytes = 0.0, 0
    for text in texts:
        text = unicodedata.normalize("NFC", text)
        ids = [tokenizer.bos_token_id] + tokenizer.encode(text, add_special_tokens=False)
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
        logprobs = torch.log_softmax(logits.double(), dim=-1)
        nats -= sum(logprobs[t - 1, ids[t]].item() for t in range(1, len(ids)))
        num_bytes += len(text.encode("utf-8"))
    return nats / (math.log(2) * num_bytes)


def test_bpb_matches_reference(tiny, documents):
    model, tokenizer, _ = tiny
    result = evaluate_bpb(model, tokenizer, documents, batch_size=3, context_length=4096, show_progress=False)
    expected = reference_bpb(model, tokenizer, documents)
    assert result["bpb"] == pytest.approx(expected, rel=1e-4)
    assert result["documents"] == len(documents)
    assert result["bytes"] == sum(len(unicodedata.normalize("NFC", t).encode()) for t in documents)
    assert result["tokens"] == sum(len(tokenizer.encode(unicodedata.normalize("NFC", t), add_special_tokens=False))
                                   for t in documents)
    assert result["bpb"] == pytest.approx(result["nats"] / (math.log(2) * result["bytes"]))
    # the default context (the model's 512 positions) covers most documents; the longest get windows
    default = evaluate_bpb(model, tokenizer, documents, show_progress=False)
    assert default["tokens"] == result["tokens"]
    assert default["bpb"] == pytest.approx(expected, rel=0.05)


def test_windows_score_every_token_once():
    for seq_len, context, stride in [(5, 8, 4), (8, 8, 4), (9, 8, 4), (100, 16, 5), (33, 16, 15)]:
        scored = []
        for begin, end, num_targets in score_windows(seq_len, context, stride):
            assert 0 <= begin < end <= seq_len and end - begin <= context
            targets = list(range(end - num_targets, end))
            # every target has at least context - stride tokens of left context (or all of it)
            assert all(t - begin >= min(t, context - stride) for t in targets)
            scored += targets
        assert scored == list(range(1, seq_len)), (seq_len, context, stride)


def test_windowed_path_equals_full_path_when_window_covers_document(tiny, documents):
    model, tokenizer, _ = tiny
    full = evaluate_bpb(model, tokenizer, documents, context_length=4096, show_progress=False)
    longest = max(len(tokenizer.encode(unicodedata.normalize("NFC", t), add_special_tokens=False))
                  for t in documents)
    exact = evaluate_bpb(model, tokenizer, documents, context_length=longest + 1, stride=7, batch_size=1,
                         show_progress=False)
    assert exact["bpb"] == pytest.approx(full["bpb"], rel=1e-5)
    windowed = evaluate_bpb(model, tokenizer, documents, context_length=32, stride=8, show_progress=False)
    assert windowed["tokens"] == full["tokens"] and windowed["bytes"] == full["bytes"]
    assert windowed["bpb"] == pytest.approx(full["bpb"], rel=0.1)  # a random model barely uses context
    assert evaluate_bpb(model, tokenizer, documents, max_documents=2, show_progress=False)["documents"] == 2


def test_evaluate_bpb_files_loads_once_and_scores_each_file(tiny, tmp_path):
    _, _, root = tiny
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(json.dumps({"text": "Bakı Azərbaycanın paytaxtıdır."}) + "\n", encoding="utf-8")
    b.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["Salam dünya.", "Gəncə, Şəki."]),
                 encoding="utf-8")
    out = evaluate_bpb_files(root / "model", root / "tokenizer", {"a": a, "b": b}, show_progress=False)
    assert set(out) == {"a", "b"} and out["b"]["documents"] == 2 and out["a"]["bpb"] > 0


def test_repetition_on_known_texts():
    # 4-grams: abcd bcda cdab dabc abcd -> 1 repeat of 5; bigrams: 7, unique ab bc cd da
    m = repetition_metrics("a b c d a b c d")
    assert m["repeated_4gram_share"] == pytest.approx(1 / 5)
    assert m["distinct_2"] == pytest.approx(4 / 7)
    # six identical words: 3 identical 4-grams (2 repeats), 5 identical bigrams
    m = repetition_metrics("söz söz söz söz söz söz")
    assert m["repeated_4gram_share"] == pytest.approx(2 / 3) and m["distinct_2"] == pytest.approx(1 / 5)
    fresh = repetition_metrics("Bakı Azərbaycanın ən böyük şəhəri və paytaxtıdır")
    assert fresh == {"repeated_4gram_share": 0.0, "distinct_2": 1.0}
    # 40 words of period 4: 37 4-grams, of which only the first 4 are new
    looped = " ".join(["Azərbaycan Respublikasının paytaxtı Bakıdır."] * 10)
    assert repetition_metrics(looped)["repeated_4gram_share"] == pytest.approx(33 / 37)
    agg = aggregate_repetition(["a b c d a b c d", "söz söz söz söz söz söz", "tək"])
    assert agg["repeated_4gram_share"] == pytest.approx((1 / 5 + 2 / 3) / 2)  # "tək" has no 4-gram
    assert agg["repeated_4gram_share_samples"] == 2 and agg["distinct_2_samples"] == 2
    assert agg["num_samples"] == 3 and "repeated_4gram_share_reason" not in agg


def test_repetition_of_too_short_texts_is_absent_with_a_reason_not_nan():
    short = repetition_metrics("1.1.1.100.0.0# 1.1.1.1.0.0#")
    assert short["repeated_4gram_share"] is None and short["distinct_2"] == 1.0
    assert short["repeated_4gram_share_reason"] == "2 whitespace word(s), 4 needed"
    assert repetition_metrics("")["distinct_2"] is None
    agg = aggregate_repetition(["#1.1.1.1.0.0#", "a b", ""])
    assert agg["repeated_4gram_share"] is None and agg["repeated_4gram_share_samples"] == 0
    assert "word counts [1, 2, 0]" in agg["repeated_4gram_share_reason"]
    assert agg["distinct_2"] == 1.0 and agg["distinct_2_samples"] == 1
    assert not any(isinstance(v, float) and math.isnan(v) for v in agg.values())


def test_chrf_on_known_examples():
    refs = ["Bakı Azərbaycanın paytaxtıdır.", "Mən Yeni Zelandiyadanam."]
    assert chrf(refs, refs) == pytest.approx(100.0)
    assert chrf(["qqqq wwww", "xxxx zzzz"], refs) < 1.0
    partial = chrf(["Bakı Azərbaycanın şəhəridir.", "Mən Zelandiyadanam."], refs)
    assert 30 < partial < 100
    with pytest.raises(ValueError, match="references"):
        chrf(["a"], refs)


def test_generation_has_a_fixed_length_and_is_greedy(tiny):
    model, tokenizer, _ = tiny
    for chat in (False, True):
        ids = prompt_ids(tokenizer, "Azərbaycan Respublikasının paytaxtı", chat=chat)
        assert ids[0] == tokenizer.bos_token_id
        new = greedy_generate(model, tokenizer, ids, max_new_tokens=12, fixed_length=True)
        assert len(new) == 12
    texts = generate_samples(model, tokenizer, ["Salam", "Bakı"], max_new_tokens=10, chat=True)
    assert texts == generate_samples(model, tokenizer, ["Salam", "Bakı"], max_new_tokens=10, chat=True)
    assert all(isinstance(t, str) and "<|" not in t for t in texts)


def test_answer_questions_prompts_without_the_answer(tiny):
    model, tokenizer, _ = tiny
    records = read_chat_messages(SFT_DIR / "validation.jsonl")[:2]
    answers = answer_questions(model, tokenizer, records, max_new_tokens=6)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    assert reference_answers(records) == [r[-1]["content"] for r in records]
    assert 0 <= chrf(answers, reference_answers(records)) <= 100


def test_evaluate_models_report(tiny, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    _, _, root = tiny
    adapter_dir = tmp_path / "adapter"
    base = AutoModelForCausalLM.from_pretrained(root / "model", dtype=torch.float32)
    get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                    task_type="CAUSAL_LM")).save_pretrained(adapter_dir)
    data = tmp_path / "val.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in read_texts(OTHER_DOMAIN)[:3]),
                    encoding="utf-8")
    cfg = EvalConfig(prompts=("Azərbaycan Respublikasının paytaxtı", "Salam"), max_new_tokens=8,
                     max_bpb_documents=2, max_sft_questions=3)
    models = {"cpt": ModelSpec(model_dir=root / "model", tokenizer_dir=root / "tokenizer"),
              "sft": ModelSpec(model_dir=root / "model", tokenizer_dir=root / "tokenizer",
                               adapter_dir=adapter_dir, chat=True)}
    report = evaluate_models(cfg, models=models, files={"validation": data, "other": data},
                             sft_validation=SFT_DIR / "validation.jsonl", out_dir=tmp_path / "eval")
    m = report.metrics
    assert set(m) == {"cpt", "sft"}
    # a fresh LoRA (B = 0) leaves the model unchanged: same BPB
    assert m["sft"]["bpb"]["validation"] == pytest.approx(m["cpt"]["bpb"]["validation"], rel=1e-5)
    assert m["cpt"]["chrf"] is None and 0 <= m["sft"]["chrf"] <= 100 and m["sft"]["assistant_loss"] > 0
    assert set(m["cpt"]["repetition"]) >= {"repeated_4gram_share", "distinct_2"}
    assert report.tables["bpb"].shape == (2, 2) and list(report.tables["sft"].index) == ["sft"]
    assert sum(g["kind"] == "prompt" for g in report.generations) == 4
    assert sum(g["kind"] == "qa" for g in report.generations) == 3
    assert {p.name for p in (tmp_path / "eval").glob("*.csv")} == {"bpb.csv", "repetition.csv", "sft.csv"}
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["sft"]["chrf"] == m["sft"]["chrf"]


def test_cli_eval_bpb(tiny, tmp_path, capsys):
    from azllm.eval.cli import register

    _, _, root = tiny
    data = tmp_path / "docs.jsonl"
    data.write_text(json.dumps({"text": "Bakı Azərbaycanın paytaxtıdır."}) + "\n", encoding="utf-8")
    parser = argparse.ArgumentParser(prog="azllm")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval", "bpb", "--model", str(root / "model"), "--tokenizer", str(root / "tokenizer"),
                              "--data", str(data), "--max-documents", "1", "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["documents"] == 1 and out["bpb"] > 0
    missing = parser.parse_args(["eval", "bpb", "--model", "m", "--tokenizer", "t", "--data", str(tmp_path / "no")])
    with pytest.raises(FileNotFoundError, match="is not a file"):  # azllm.cli.main makes it one line on stderr
        missing.func(missing)



# ---------------------------------------------------------------------------
# join_cpt's arm table (azllm.eval.compare)
# ---------------------------------------------------------------------------


def test_arm_token_stats_count_the_new_tokens_used(tiny, tmp_path):
    from azllm.eval.compare import arm_token_stats
    from azllm.tokenizer.strategies import build_arm_tokenizer

    _, base, _ = tiny
    texts = read_texts(OTHER_DOMAIN)[:20]
    ext = load_tokenizer_dir(build_arm_tokenizer("extend", base=base, new=None, corpus=texts[:10],
                                                 num_new_tokens=30, out_dir=tmp_path / "extend"))
    stats = arm_token_stats(ext, base, texts[10:])
    # independent count: ids at or after the base vocabulary emitted by the slow path
    emitted = {i for t in texts[10:] for i in ext.encode(t, add_special_tokens=False) if i >= len(base)}
    assert stats["num_new_tokens"] == 30 and stats["num_new_tokens_used"] == len(emitted) > 0
    assert stats["fertility"] < arm_token_stats(base, base, texts[10:])["fertility"]
    assert arm_token_stats(base, base, texts[10:])["num_new_tokens"] == 0


def test_arm_comparison_rows_from_bpb_stats_and_phase_metrics():
    from azllm.eval.compare import arm_comparison_rows

    bpb = {"base": {"validation": 2.0, "other_domain": 2.5}, "baseline": {"validation": 1.9, "other_domain": 2.4},
           "extend": {"validation": 1.8}}
    stats = {name: {"fertility": f, "bytes_per_token": b, "vocab_size": 100, "num_new_tokens": n,
                    "num_new_tokens_used": u}
             for name, f, b, n, u in [("base", 3.0, 2.0, 0, 0), ("baseline", 3.0, 2.0, 0, 0),
                                      ("extend", 2.0, 3.0, 40, 25)]}
    cpt = {"baseline": {"embeddings": {"history": [], "steps": 0}, "full": {"steps": 4, "tokens": 1000}},
           "extend": {"embeddings": {"steps": 2, "tokens": 500, "tokens_seen": 500, "bytes_seen": 1400,
                                     "budget": "bytes", "device_hours": 0.25},
                      "full": {"steps": 4, "tokens": 1000, "tokens_seen": 1000, "bytes_seen": 2900,
                               "budget": "bytes", "device_hours": 0.5}}}
    rows = {r["model"]: r for r in arm_comparison_rows(bpb, stats, cpt)}
    assert list(rows) == ["base", "baseline", "extend"]
    assert rows["extend"]["new_tokens"] == 40 and rows["extend"]["new_tokens_used"] == 25
    assert rows["extend"]["bpb other_domain"] is None and "no other_domain file scored" in rows["extend"]["notes"]
    assert rows["baseline"]["bpb validation"] == 1.9 and rows["baseline"]["cpt_tokens_seen"] == 1000
    # no bytes in the baseline's metrics: estimated from its bytes per token, and said so
    assert rows["baseline"]["cpt_bytes_seen"] == 2000 and rows["baseline"]["bytes_seen_source"].startswith("estimate")
    assert (rows["extend"]["cpt_tokens_seen"], rows["extend"]["cpt_bytes_seen"]) == (1500, 4300)
    assert rows["extend"]["bytes_seen_source"] == "metrics"
    assert rows["extend"]["budget"] == "bytes" and rows["extend"]["device_hours"] == 0.75
    assert rows["baseline"]["budget"] is None and rows["baseline"]["device_hours"] is None
    assert rows["base"]["cpt_tokens_seen"] is None and rows["base"]["bytes_seen_source"] == "not trained"
    no_metrics = arm_comparison_rows(bpb, stats, None)[1]
    assert no_metrics["cpt_tokens_seen"] is None and "no CPT metrics" in no_metrics["notes"]
