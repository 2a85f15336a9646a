"""`azllm eval ...` commands.

    azllm eval bpb --model DIR --tokenizer NAME_OR_DIR --data validation.jsonl --max-documents 100 --json
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
