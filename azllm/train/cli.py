r"""`azllm cpt`: one CPT phase from the command line, outside Metaflow (docs/DESIGN.md §6).

    azllm data prepare --config configs/tiny.toml --out runs/data
    azllm cpt --config configs/tiny.toml --phase embeddings --arm baseline --data runs/data --out runs/cpt-baseline
    azllm cpt --config configs/tiny.toml --phase full --arm baseline --data runs/data --out runs/cpt-baseline

    # the extend arm needs its tokenizer first (default place: DATA/tokenizers/extend)
    azllm tokenizer extend --base llama-3.2 --corpus runs/data/train.jsonl --num-tokens 300 \
        --out runs/data/tokenizers/extend
    azllm cpt --config configs/tiny.toml --phase embeddings --arm extend --data runs/data --out runs/cpt-extend

``--data`` is a directory written by ``azllm data prepare`` (``train.jsonl`` is what CPT reads).
The arm's tokenizer is ``--tokenizer DIR``, by default ``DATA/tokenizers/ARM`` (a Hugging Face
tokenizer directory, as the flow's ``train_tokenizer`` step writes one per arm); the baseline
arm falls back to the base model's own tokenizer. ``--out`` holds one directory per phase
(``OUT/embeddings``, ``OUT/full``: the exported ``model/`` and ``work/`` with ``metrics.jsonl``,
``checkpoints/``, ``tensorboard/`` and ``worker.log``); ``--phase full`` starts from
``OUT/embeddings/model`` (or, for baseline, the adapted base model). Running the same command
again resumes from the newest complete checkpoint. Every input is checked before a process
group starts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from azllm.config import ARMS
from azllm.data.layout import PreparedData

DATA_FILES = ("train", "validation")
"""The roles of `azllm.data.layout.PreparedData` that `azllm cpt --data` needs."""


def register(subparsers: Any) -> None:
    """Add `cpt` to the top-level parser's subparsers."""
    cpt = subparsers.add_parser("cpt", help="run one CPT phase of one arm under torchrun",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cpt.add_argument("--config", required=True, help="preset name or TOML path")
    cpt.add_argument("--phase", required=True, choices=("embeddings", "full"))
    cpt.add_argument("--arm", required=True, choices=ARMS)
    cpt.add_argument("--data", required=True, type=Path, help="directory written by `azllm data prepare`")
    cpt.add_argument("--out", required=True, type=Path, help="phase outputs; rerunning resumes from here")
    cpt.add_argument("--tokenizer", type=Path, default=None, help="the arm's tokenizer (default DATA/tokenizers/ARM)")
    cpt.add_argument("--nproc", type=int, default=None,
                     help="processes on this node (default: one per GPU, else [compute] nproc_per_node)")
    cpt.set_defaults(func=run_cpt)


def check_data_dir(data: Path) -> PreparedData:
    """`--data` as a PreparedData, once it holds the files CPT reads and train.jsonl is not empty."""
    from azllm.data.packing import has_content

    try:
        prepared = PreparedData.at(data).require(*DATA_FILES)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"--data {data}: {e}") from None
    if not has_content(prepared.train):
        raise ValueError(f"--data {data}: {prepared.train.name} is empty, there is nothing to train on; write it "
                         f"again with `azllm data prepare --config PRESET --out {data} --overwrite`")
    return prepared


def arm_tokenizer(arm: str, data: Path, given: Path | None, base_model_dir: Path) -> Path:
    """The tokenizer directory of ``arm`` (see the module docstring for the search order)."""
    candidate = given or data / "tokenizers" / arm
    if (candidate / "tokenizer.json").is_file() or (candidate / "tokenizer_config.json").is_file():
        return candidate
    if given is None and arm == "baseline":
        return base_model_dir
    raise FileNotFoundError(f"no tokenizer for arm {arm!r} at {candidate} (no tokenizer.json): save the arm's "
                            "tokenizer there (the flow's train_tokenizer step writes tokenizers/arms/ARM) or pass "
                            "--tokenizer DIR")


def run_cpt(args: argparse.Namespace) -> int:
    from azllm.config import load_pipeline_config
    from azllm.config.paths import check_output_dir
    from azllm.model.load import materialize_base_model
    from azllm.train.arms import pack_arm_corpus, train_embeddings_phase, train_full_phase
    from azllm.train.launcher import check_block_size, check_devices, training_processes_per_node
    from azllm.train.phase import TorchrunLayout

    cfg = load_pipeline_config(args.config)
    nproc = args.nproc if args.nproc is not None else training_processes_per_node(0, cfg.compute.nproc_per_node)
    layout = TorchrunLayout(nproc_per_node=nproc)
    check_devices(cfg.cpt.runtime.mixed_precision, layout.nproc_per_node)
    data = check_data_dir(args.data)
    check_output_dir(args.out, overwrite=True)  # a file or an unwritable place; a used --out is resumed, not refused
    phase_out = args.out / args.phase
    if args.phase == "embeddings":
        base = materialize_base_model(cfg.model)
        check_block_size(cfg.cpt.block_size, base)  # before tokenizing: the packing would be wasted
        tokenizer = arm_tokenizer(args.arm, args.data, args.tokenizer, base)
        corpus = pack_arm_corpus(cfg, tokenizer_dir=tokenizer, data=data)
        result = train_embeddings_phase(cfg, arm=args.arm, tokenizer_dir=tokenizer, corpus=corpus,
                                        out_dir=phase_out, layout=layout)
    else:
        init = args.out / "embeddings" / ("adapted" if args.arm == "baseline" else "model")
        if not (init / "config.json").is_file():
            raise FileNotFoundError(f"{init} does not exist: run `azllm cpt --config {args.config} --phase embeddings "
                                    f"--arm {args.arm} --data {args.data} --out {args.out}"
                                    f"{f' --tokenizer {args.tokenizer}' if args.tokenizer else ''}` first "
                                    "(phase 2 starts from phase 1's model)")
        check_block_size(cfg.cpt.block_size, init)
        corpus = pack_arm_corpus(cfg, tokenizer_dir=init, data=data)  # cached
        result = train_full_phase(cfg, init_dir=init, corpus=corpus, out_dir=phase_out, layout=layout)
    summary = {k: v for k, v in result.metrics.items() if k != "history"}
    print(json.dumps({"phase": args.phase, "arm": args.arm, "model_dir": str(result.model_dir), **summary},
                     default=str))
    return 0
