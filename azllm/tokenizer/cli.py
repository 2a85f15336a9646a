"""`azllm tokenizer train|extend|eval`: the tokenizer stage outside the flow.

    azllm tokenizer train --corpus ../shared/data/az_corpus --vocab-size 32000 64000 --out runs/tok
    azllm tokenizer extend --base smollm2-135m --corpus ../shared/data/az_corpus --num-tokens 16000 --out runs/ext
    azllm tokenizer eval --tokenizer llama-3.2 runs/tok/bbpe-64000 --data ../shared/data/az_eval_other_domain.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path


def _iter_corpus(paths: Sequence[str]) -> Iterator[str]:
    from azllm.data.readers import iter_documents

    for p in paths:
        yield from iter_documents(p, text_field="text")


def _train(args: argparse.Namespace) -> int:
    from azllm.config.paths import check_output_dir, staged_dir
    from azllm.tokenizer.train import train_sweep

    out = Path(args.out)
    check_output_dir(out, overwrite=args.overwrite)
    with staged_dir(out) as tmp:
        results = train_sweep(lambda: _iter_corpus(args.corpus), args.vocab_size,
                              min_frequency=args.min_frequency, out_dir=tmp)
    for r in results:
        path = out / r.path.name
        print(json.dumps({"path": str(path), "vocab_size": r.vocab_size,
                          "requested_vocab_size": r.requested_vocab_size}))
        if r.vocab_size < r.requested_vocab_size:
            print(f"azllm tokenizer train: note: {path} holds {r.vocab_size:,} tokens, not the "
                  f"{r.requested_vocab_size:,} requested: the corpus has no more pairs to merge (a larger "
                  "corpus or a lower --min-frequency gives more)", file=sys.stderr)
    return 0


def _extend(args: argparse.Namespace) -> int:
    from azllm.config.paths import check_output_dir, staged_dir
    from azllm.tokenizer.extend import new_token_ids
    from azllm.tokenizer.load import load_tokenizer
    from azllm.tokenizer.strategies import build_arm_tokenizer

    out_dir = Path(args.out)
    check_output_dir(out_dir, overwrite=args.overwrite)
    base = load_tokenizer(args.base)
    with staged_dir(out_dir) as tmp:
        build_arm_tokenizer("extend", base=base, new=None, corpus=_iter_corpus(args.corpus),
                            num_new_tokens=args.num_tokens, min_frequency=args.min_frequency, out_dir=tmp)
    tok = load_tokenizer(out_dir)
    print(json.dumps({"path": str(out_dir), "base": args.base, "base_vocab_size": len(base),
                      "new_tokens": len(new_token_ids(tok, base)), "vocab_size": len(tok)}))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from azllm.tokenizer.load import load_tokenizer
    from azllm.tokenizer.metrics import fertility_table

    texts = list(_iter_corpus([args.data]))
    df = fertility_table({name: load_tokenizer(name) for name in args.tokenizer}, texts)
    if args.json:
        for row in df.to_dict(orient="records"):
            print(json.dumps({"name": row["tokenizer"], **{k: row[k] for k in (
                "fertility", "bytes_per_token", "words_per_context", "share_words_3plus_tokens", "vocab_size")}}))
    else:
        print(df.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def register(subparsers) -> None:
    """Add `tokenizer train`, `tokenizer extend` and `tokenizer eval` to the top-level `azllm` parser."""
    p = subparsers.add_parser("tokenizer", help="train and evaluate byte-level BPE tokenizers")
    sub = p.add_subparsers(dest="tokenizer_command", required=True)

    t = sub.add_parser("train", help="train a Llama-3-style byte-level BPE per vocabulary size")
    t.add_argument("--corpus", nargs="+", required=True,
                   help="files, directories or globs of .jsonl (text field 'text'), .txt or .parquet")
    t.add_argument("--vocab-size", nargs="+", type=int, required=True,
                   help="vocabulary size(s), Llama 3's 256 special tokens included; one directory each")
    t.add_argument("--min-frequency", type=int, default=2, help="minimum pair count for a merge (default 2)")
    t.add_argument("--out", required=True, help="output directory (absent or empty); each size goes to OUT/bbpe-SIZE")
    t.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    t.set_defaults(func=_train)

    x = sub.add_parser("extend", help="continued BPE: new merges over a base tokenizer's own segmentation")
    x.add_argument("--base", required=True,
                   help="base byte-level BPE: 'llama-3.2', a builtin model (smollm2-135m), a directory or hub id")
    x.add_argument("--corpus", nargs="+", required=True,
                   help="files, directories or globs of .jsonl (text field 'text'), .txt or .parquet")
    x.add_argument("--num-tokens", type=int, required=True, help="new tokens to append (0 = all the corpus supports)")
    x.add_argument("--min-frequency", type=int, default=2, help="minimum pair count for a merge (default 2)")
    x.add_argument("--out", required=True, help="output tokenizer directory (absent or empty)")
    x.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    x.set_defaults(func=_extend)

    e = sub.add_parser("eval", help="fertility, bytes per token and context capacity on a corpus")
    e.add_argument("--tokenizer", nargs="+", required=True,
                   help="'llama-3.2', a builtin model (smollm2-135m), a tokenizer directory or a hub id")
    e.add_argument("--data", required=True, help="evaluation corpus (.jsonl with a 'text' field, .txt, dir)")
    e.add_argument("--json", action="store_true", help="one JSON object per tokenizer instead of a table")
    e.set_defaults(func=_eval)
