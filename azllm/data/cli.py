"""`azllm data ...` commands; the top-level `azllm/cli.py` calls :func:`register`.

    azllm data stats /work/shared/data/az_corpus --json
    azllm data prepare --config configs/demo.toml --out runs/data
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add `data stats` and `data prepare` to the top-level parser's subparsers."""
    data = subparsers.add_parser("data", help="inspect and prepare corpora")
    commands = data.add_subparsers(dest="data_command", required=True)

    stats = commands.add_parser("stats", help="documents, bytes, words of a corpus source")
    stats.add_argument("path", help="file, directory, glob, s3:// URL or HF dataset id")
    stats.add_argument("--text-field", default="text", help="JSON/parquet field with the text (default: text)")
    stats.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    stats.set_defaults(func=run_stats)

    prepare = commands.add_parser("prepare", help="write train/validation JSONL and SFT splits from a preset")
    prepare.add_argument("--config", default="configs/demo.toml", help="preset path or name (default: demo)")
    prepare.add_argument("--out", required=True, type=Path, help="output directory (absent or empty)")
    prepare.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    prepare.set_defaults(func=run_prepare)


def run_stats(args: argparse.Namespace) -> int:
    from azllm.data.readers import iter_documents
    from azllm.data.stats import corpus_stats, describe_stats

    stats = describe_stats(corpus_stats(iter_documents(args.path, text_field=args.text_field)))
    if args.json:
        print(json.dumps({"path": args.path, **stats}))
    else:
        for key in ("documents", "bytes", "words", "mb", "words_per_doc"):
            print(f"{key:>14}  {stats[key]:,}")
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    from azllm.config import load_pipeline_config
    from azllm.config.paths import check_output_dir, staged_dir
    from azllm.data.stage import prepare_all

    cfg = load_pipeline_config(args.config).data
    check_output_dir(args.out, overwrite=args.overwrite)
    with staged_dir(args.out) as tmp:  # complete or absent; --overwrite leaves no stale file
        stats = prepare_all(cfg, tmp)
    print(json.dumps(stats, indent=2, ensure_ascii=False))
    return 0
