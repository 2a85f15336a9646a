"""The preference stage at demo scale, outside the flow: SFT, then DPO or GRPO, on SmolLM2-135M.

What `make demo` would add, measured without running the whole demo flow: the base
SmolLM2-135M-Instruct with the baseline arm's tokenizer (its own vocabulary, Llama 3 chat
template and specials, their embedding rows the mean of the others; the demo flow's SFT
starts from a CPT model instead, 12 CPT steps later), LoRA SFT
with `configs/demo.toml`'s `[sft]`, then `azllm.train.preference.run_preference` with the
preset's `[preference]` (or `--method`). Before and after the stage, greedy answers to the
held-out chat questions (all of them, not just `[eval] max_sft_questions`; `[eval]
max_new_tokens` tokens each): share of answers in Azerbaijani (`azllm.eval.rewards`), mean
repeated-4-gram share of the answers (§9, over answers of >= 4 words), chrF.

    .venv/bin/python benchmarks/preference_demo.py                     # the demo preset's method
    .venv/bin/python benchmarks/preference_demo.py --method grpo --work /tmp/pref-demo

stdout: one JSON line per model (sft, preference) and one for the stage: wall seconds, CPU seconds
of the process (all threads; on a shared machine the wall time depends on the load, printed too).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import torch

from azllm.config import load_pipeline_config, resolve_path
from azllm.data.layout import PreparedData
from azllm.data.sft import prepare_sft, read_chat_messages
from azllm.eval.generation import aggregate_repetition
from azllm.eval.load import load_model_and_tokenizer
from azllm.eval.rewards import answer_language
from azllm.eval.scores import answer_questions, chrf, reference_answers
from azllm.model.load import load_model, materialize_base_model
from azllm.tokenizer.load import load_tokenizer
from azllm.tokenizer.strategies import build_arm_tokenizer
from azllm.train.preference import run_preference
from azllm.train.sft import run_sft


def answer_figures(model_dir: Path, tokenizer_dir: Path, adapter_dir: Path, questions, max_new_tokens: int) -> dict:
    model, tokenizer = load_model_and_tokenizer(model_dir, tokenizer_dir, adapter_dir)
    answers = answer_questions(model, tokenizer, questions, max_new_tokens)
    repetition = aggregate_repetition(answers)
    return {"answers": len(answers),
            "azerbaijani_share": sum(answer_language(a) == "azerbaijani" for a in answers) / len(answers),
            "repeated_4gram_share": repetition["repeated_4gram_share"],
            "repeated_4gram_samples": repetition["repeated_4gram_share_samples"],
            "chrf": chrf(answers, reference_answers(questions))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="configs/demo.toml")
    ap.add_argument("--method", choices=("dpo", "grpo"), help="default: the preset's [preference] method")
    ap.add_argument("--work", default="/tmp/azllm-preference-demo", help="SFT is kept here and reused")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    cfg = load_pipeline_config(resolve_path(args.preset))
    pref = cfg.preference if args.method is None else dataclasses.replace(cfg.preference, method=args.method)
    work = Path(args.work)
    prepared = PreparedData(data_dir=work / "data")
    data = prepare_sft(cfg.data, work / "data") if not prepared.sft_train.exists() else None
    base_dir = materialize_base_model(cfg.model)
    tok_dir, model_dir = work / "tokenizer", work / "model"
    if not (model_dir / "config.json").exists():  # the baseline arm: base vocabulary + Llama 3 chat specials
        build_arm_tokenizer("baseline", base=load_tokenizer(base_dir), new=None, out_dir=tok_dir)
        model = load_model(base_dir)
        model.resize_token_embeddings(len(load_tokenizer(tok_dir)), mean_resizing=True)
        model.save_pretrained(model_dir)
        load_tokenizer(tok_dir).save_pretrained(model_dir)  # a model directory holds its tokenizer
    sft_out = work / "sft"
    if not (sft_out / "adapter" / "adapter_config.json").exists():
        t0 = time.monotonic()
        run_sft(cfg.sft, model_dir=model_dir, data=prepared, out_dir=sft_out)
        print(json.dumps({"what": "sft", "seconds": round(time.monotonic() - t0, 1),
                          "records": data.stats["train"]["records"] if data else None}), flush=True)

    questions = read_chat_messages(prepared.sft_validation)
    before = answer_figures(model_dir, tok_dir, sft_out / "adapter", questions, cfg.eval.max_new_tokens)
    print(json.dumps({"model": "sft", **before}), flush=True)
    t0, cpu0 = time.monotonic(), time.process_time()
    result = run_preference(pref, model_dir=model_dir, adapter_dir=sft_out / "adapter", data=prepared,
                            out_dir=work / f"preference-{pref.method}")
    seconds, cpu_seconds = time.monotonic() - t0, time.process_time() - cpu0
    keep = {k: v for k, v in result.metrics.items() if k not in ("train_history", "skipped_examples")}
    print(json.dumps({"what": f"preference:{pref.method}", "stage_seconds": round(seconds, 1),
                      "stage_cpu_seconds": round(cpu_seconds, 1), "load_average_1min": os.getloadavg()[0],
                      "torch_threads": torch.get_num_threads(), **keep,
                      "last_logged": result.metrics["train_history"][-1:]}), flush=True)
    after = answer_figures(model_dir, tok_dir, result.adapter_dir, questions, cfg.eval.max_new_tokens)
    print(json.dumps({"model": f"preference:{pref.method}", **after}), flush=True)


if __name__ == "__main__":
    main()
