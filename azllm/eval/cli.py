"""`azllm eval ...` commands.

    azllm eval bpb --model DIR --tokenizer NAME_OR_DIR --data validation.jsonl --max-documents 100 --json
    azllm chat --model CPT_DIR --tokenizer TOK_DIR --adapter SFT_ADAPTER_DIR [--prompt "Salam!"]
"""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    """Add `eval` (with `bpb`) to the top-level `azllm` parser's subparsers."""
    parser = subparsers.add_parser("eval", help="evaluate models (bits per byte ...)")
    commands = parser.add_subparsers(dest="eval_command", required=True)

    bpb = commands.add_parser("bpb", help="bits per byte of a model on a JSONL file of {'text': ...} lines")
    bpb.add_argument("--model", required=True, help="model directory (config + safetensors)")
    bpb.add_argument("--tokenizer", required=True, help="tokenizer name or directory")
    bpb.add_argument("--data", required=True, help="JSONL file, one {\"text\": ...} document per line")
    bpb.add_argument("--max-documents", type=int, default=0, help="documents scored (0 = all)")
    bpb.add_argument("--json", action="store_true", help="print the result as JSON")
    bpb.set_defaults(func=_bpb)

    chat = subparsers.add_parser("chat", help="talk to a model through its chat template (greedy)")
    chat.add_argument("--model", required=True, help="model directory (the CPT model, or a merged SFT model)")
    chat.add_argument("--tokenizer", required=True, help="tokenizer name or directory")
    chat.add_argument("--adapter", default=None, help="LoRA adapter directory from `sft` (none = model as is)")
    chat.add_argument("--max-new-tokens", type=int, default=256, help="tokens per answer")
    chat.add_argument("--prompt", default=None, help="answer this one message and exit (none = read stdin)")
    chat.set_defaults(func=_chat)


def _bpb(args: argparse.Namespace) -> int:
    from pathlib import Path

    from azllm.eval.bpb import evaluate_bpb, read_texts
    from azllm.eval.report import load_model_and_tokenizer

    data = Path(args.data)
    if not data.is_file():
        print(f"error: --data {data} is not a file")
        return 2
    model, tokenizer = load_model_and_tokenizer(args.model, args.tokenizer)
    result = evaluate_bpb(model, tokenizer, read_texts(data), max_documents=args.max_documents,
                          show_progress=not args.json)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"bpb {result['bpb']:.4f}  ({result['documents']} documents, {result['tokens']} tokens, "
              f"{result['bytes']} bytes)")
    return 0


def _chat(args: argparse.Namespace) -> int:
    """One answer for --prompt, else a conversation over stdin lines (an empty line or EOF ends it)."""
    import sys

    from azllm.eval.generation import greedy_generate
    from azllm.eval.report import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(args.model, args.tokenizer, args.adapter)
    history: list[dict[str, str]] = []

    def reply(message: str) -> str:
        history.append({"role": "user", "content": message})
        ids = tokenizer.apply_chat_template(history, add_generation_prompt=True, tokenize=True,
                                            return_dict=True)["input_ids"]
        new = greedy_generate(model, tokenizer, list(ids), max_new_tokens=args.max_new_tokens, fixed_length=False)
        answer = tokenizer.decode(new, skip_special_tokens=True).strip()
        history.append({"role": "assistant", "content": answer})
        return answer

    if args.prompt is not None:
        print(reply(args.prompt))
        return 0
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line.strip():
            return 0
        print(reply(line.strip()), flush=True)
