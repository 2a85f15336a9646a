"""`azllm eval ...` commands.

    azllm eval bpb --model DIR --tokenizer NAME_OR_DIR --data validation.jsonl --max-documents 100 --json
    azllm eval tasks --model DIR --tasks sib200_azj,flores_azj_eng --config configs/demo.toml --limit 20
    azllm eval tasks --list
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    """Add `eval` (with `bpb`) to the top-level `azllm` parser's subparsers."""
    parser = subparsers.add_parser("eval", help="evaluate models (bits per byte ...)")
    commands = parser.add_subparsers(dest="eval_command", required=True)

    bpb = commands.add_parser("bpb", help="bits per byte of a model on a JSONL file of {'text': ...} lines")
    bpb.add_argument("--model", required=True, help="model directory (config + safetensors)")
    bpb.add_argument("--tokenizer", required=True, help="tokenizer name or directory")
    bpb.add_argument("--data", required=True, help="JSONL file, one {\"text\": ...} document per line")
    bpb.add_argument("--max-documents", type=_non_negative, default=0, help="documents scored (0 = all)")
    bpb.add_argument("--json", action="store_true", help="print the result as JSON")
    bpb.set_defaults(func=_bpb)

    tasks = commands.add_parser("tasks", help="lm-evaluation-harness tasks (lm-eval's, azllm's shipped, "
                                "the preset's custom ones) on a model directory")
    tasks.add_argument("--model", help="model directory (config + safetensors)")
    tasks.add_argument("--tokenizer", help="tokenizer directory (default: the model's)")
    tasks.add_argument("--adapter", help="a LoRA adapter directory, merged into the model before scoring")
    tasks.add_argument("--tasks", help="comma-separated task or group names (default: the preset's [eval] tasks)")
    tasks.add_argument("--config", help="preset whose [eval] task_data, custom_tasks, num_fewshot and limit apply")
    tasks.add_argument("--limit", type=int, help="documents per task (default: the preset's [eval] limit)")
    tasks.add_argument("--output", default="task_results.json", help="where lm-eval's results JSON is written")
    tasks.add_argument("--json", action="store_true", help="print azllm's score rows as JSON instead of the table")
    tasks.add_argument("--list", action="store_true", help="print every task name (azllm's, then lm-eval's)")
    tasks.set_defaults(func=_tasks)


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0 = every document), got {value}")
    return value


def _bpb(args: argparse.Namespace) -> int:
    from pathlib import Path

    from azllm.eval.bpb import evaluate_bpb, read_texts
    from azllm.eval.load import load_model_and_tokenizer, tokenizer_mismatch

    data = Path(args.data)
    if not data.is_file():
        raise FileNotFoundError(f"--data {data} is not a file; pass a JSONL file with one {{\"text\": ...}} per line")
    texts = read_texts(data)
    if not texts:
        raise ValueError(f"--data {data} holds no document; pass a JSONL file with one {{\"text\": ...}} per line")
    model, tokenizer = load_model_and_tokenizer(args.model, args.tokenizer)
    warnings = tokenizer_mismatch(model, tokenizer, model_name=f"model {args.model}",
                                  tokenizer_name=f"tokenizer {args.tokenizer}")
    for warning in warnings:
        print(f"azllm eval bpb: warning: {warning}", file=sys.stderr)
    result = evaluate_bpb(model, tokenizer, texts, max_documents=args.max_documents,
                          show_progress=not args.json)
    if args.json:
        print(json.dumps({**result, **({"warnings": warnings} if warnings else {})}, allow_nan=False))
    else:
        print(f"bpb {result['bpb']:.4f}  ({result['documents']} documents, {result['tokens']} tokens, "
              f"{result['bytes']} bytes)")
    return 0


def _tasks(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from pathlib import Path

    from azllm.config import ConfigError, EvalConfig, load_pipeline_config
    from azllm.config.tasks import check_eval_tasks, known_task_names

    if args.list:
        names = known_task_names()
        for where in ("azllm", "lm-eval"):
            print("\n".join(f"{n}\t{where}" for n in sorted(k for k, v in names.items() if v == where)))
        return 0
    if not args.model:
        raise ValueError("--model DIR is required (or --list to see the tasks)")
    # bad input is raised: azllm.cli's error boundary prints one line on stderr
    cfg = load_pipeline_config(args.config).eval if args.config else EvalConfig()
    names = tuple(t.strip() for t in args.tasks.split(",") if t.strip()) if args.tasks else cfg.tasks
    cfg = replace(cfg, tasks=names, limit=args.limit if args.limit is not None else cfg.limit)
    if not cfg.tasks:
        raise ConfigError("no tasks: give --tasks a,b or a --config preset with [eval] tasks")
    check_eval_tasks(cfg)
    from azllm.eval.load import load_model_and_tokenizer
    from azllm.eval.tasks import evaluate_tasks, format_table, write_results

    model, tokenizer = load_model_and_tokenizer(args.model, args.tokenizer or args.model, args.adapter)
    if args.adapter:
        model = model.merge_and_unload()
    scores = evaluate_tasks(model, tokenizer, cfg, model_name=Path(args.model).name)
    out = Path(args.output)
    write_results(out.parent, scores.rows, scores.results)
    if out.name != "task_results.json":
        (out.parent / "task_results.json").replace(out)
    if args.json:
        print(json.dumps(scores.rows))
    else:
        print(format_table(scores.results))
        print(f"lm-eval results: {out}")
    return 0
