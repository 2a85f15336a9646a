"""`azllm`: the pipeline's stages as commands, usable without Metaflow.

    azllm data stats ../shared/data/az_corpus
    azllm data prepare --config demo --out /tmp/data
    azllm tokenizer train --corpus data/sample/corpus.jsonl --vocab-size 4000 --out /tmp/tok
    azllm tokenizer extend --base smollm2-135m --corpus data/sample/corpus.jsonl --num-tokens 1500 --out /tmp/ext
    azllm cpt --config demo --phase embeddings --arm extend --data /tmp/data --out /tmp/cpt
    azllm tokenizer eval --tokenizer llama-3.2 /tmp/tok --data data/sample/corpus.jsonl --json
    azllm eval bpb --model DIR --tokenizer DIR --data FILE --json
    azllm config show configs/demo.toml
    azllm export --run latest --out /tmp/az-model
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

# Each stage registers its own sub-commands; a stage whose extras are missing is skipped.
STAGE_MODULES = ("azllm.data.cli", "azllm.tokenizer.cli", "azllm.eval.cli", "azllm.train.cli", "azllm.chat",
                 "azllm.export")


def _config_show(args: argparse.Namespace) -> int:
    from azllm.config import load_pipeline_config

    print(json.dumps(load_pipeline_config(args.preset).to_dict(), indent=2, ensure_ascii=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="azllm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    config = sub.add_parser("config", help="validate and print a preset").add_subparsers(dest="action")
    show = config.add_parser("show", help="print the resolved preset as JSON")
    show.add_argument("preset", help="a preset name (demo) or a TOML path")
    show.set_defaults(func=_config_show)
    for module_name in STAGE_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("azllm"):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 0 if args.command is None else 2
    from azllm.config import ConfigError

    try:
        return int(args.func(args) or 0)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"azllm: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
