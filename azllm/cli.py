"""`azllm`: the pipeline's stages as commands, usable without Metaflow.

    azllm data stats ../shared/data/az_corpus
    azllm data prepare --config demo --out /tmp/data
    azllm tokenizer train --corpus data/sample/corpus.jsonl --vocab-size 4000 --out /tmp/tok
    azllm tokenizer extend --base smollm2-135m --corpus data/sample/corpus.jsonl --num-tokens 1500 --out /tmp/ext
    azllm cpt --config demo --phase embeddings --arm baseline --data /tmp/data --out /tmp/cpt
    azllm tokenizer eval --tokenizer llama-3.2 /tmp/tok/bbpe-4000 --data data/sample/corpus.jsonl --json
    azllm eval bpb --model DIR --tokenizer DIR --data FILE --json
    azllm config show configs/demo.toml
    azllm export --run latest --out /tmp/az-model
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

# Each stage registers its own sub-commands; a stage whose extras are missing is skipped.
STAGE_MODULES = ("azllm.data.cli", "azllm.tokenizer.cli", "azllm.eval.cli", "azllm.train.cli", "azllm.runs.chat",
                 "azllm.runs.export")


def _config_show(args: argparse.Namespace) -> int:
    from azllm.config import load_pipeline_config

    print(json.dumps(load_pipeline_config(args.preset).to_dict(), indent=2, ensure_ascii=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="azllm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an expected failure (bad input, permissions, disk full)")
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
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, not only before the command
    args = parser.parse_args([a for a in argv if a != "--debug"])
    if not hasattr(args, "func"):
        parser.print_help()
        return 0 if args.command is None else 2
    return run_command(args.func, args, debug=debug)


def run_command(func, args: argparse.Namespace, *, debug: bool = False) -> int:
    """The one error boundary of every command: an expected failure (bad input or preset, a missing
    or unwritable path, disk full, file too large) is one line on stderr naming the path or key and
    the fix (:func:`azllm.config.errors.describe_failure`), exit status 2; its traceback only with
    ``--debug`` (or AZLLM_DEBUG=1). Anything else is a bug and keeps its traceback."""
    from azllm.config.errors import describe_failure

    debug = debug or os.environ.get("AZLLM_DEBUG", "") not in ("", "0")
    try:
        return int(func(args) or 0)
    except Exception as e:  # noqa: BLE001 - sorted into expected failures and bugs below
        message = describe_failure(e)
        if message is None or debug:
            raise
        print(f"azllm: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
