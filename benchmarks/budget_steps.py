"""Steps each arm's CPT phases run at ``[cpt] budget = "bytes"`` for a preset and a corpus.

Builds the preset's arm tokenizers on the corpus (as the flow's train_tokenizer step does, without
the vocabulary sweep), packs the corpus with each and with the base model's tokenizer, and prints
one JSON line per arm: corpus bytes, tokens, bytes per token, and per phase the configured and the
derived steps and warm-up (azllm.train.budget.plan_phase) with the tokens and bytes they cover.
CPU only, no training; the demo preset takes ~10 s, smollm2 on az_corpus ~3 minutes on 2 cores::

    python benchmarks/budget_steps.py --config demo --corpus data/sample/corpus.jsonl
    python benchmarks/budget_steps.py --config smollm2 --corpus ../shared/data/az_corpus/train-00000.jsonl
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

from azllm.config import load_pipeline_config
from azllm.data.layout import TRAIN, VALIDATION, PreparedData
from azllm.data.packing import pack_corpus
from azllm.model.load import materialize_base_model
from azllm.tokenizer.stage import run_tokenizer_stage
from azllm.train.budget import plan_phase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="demo", help="preset name or TOML path")
    parser.add_argument("--corpus", type=Path, default=Path("data/sample/corpus.jsonl"), help="JSON lines, 'text'")
    args = parser.parse_args()
    cfg = load_pipeline_config(args.config)
    cpt = cfg.cpt
    work = Path(tempfile.mkdtemp(prefix="budget-steps-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)  # models and blocks: GBs
    data = work / "data"  # a prepared-data directory (azllm.data.layout): the corpus is train and validation
    data.mkdir()
    for name in (TRAIN, VALIDATION):
        (data / name).symlink_to(args.corpus.resolve())
    stage = run_tokenizer_stage(dataclasses.replace(cfg.tokenizer, sweep=()),
                                base_tokenizer=cfg.model.tokenizer_name, arms=cpt.arms,
                                data=PreparedData.at(data), out_dir=work / "tokenizers")

    def tokens(tokenizer_dir: Path) -> int:
        return pack_corpus(args.corpus, tokenizer_dir, block_size=cpt.block_size, num_proc=cpt.tokenize_num_proc,
                           cache_root=work / "packed").num_tokens

    base_packed = pack_corpus(args.corpus, materialize_base_model(cfg.model), block_size=cpt.block_size,
                              num_proc=cpt.tokenize_num_proc, cache_root=work / "packed")
    corpus_bytes, reference = base_packed.num_bytes, base_packed.num_tokens
    for arm, tokenizer_dir in stage.arm_tokenizers.items():
        arm_tokens = tokens(tokenizer_dir)
        row = {"preset": cfg.name, "arm": arm, "corpus_bytes": corpus_bytes, "tokens": arm_tokens,
               "baseline_tokens": reference, "bytes_per_token": round(corpus_bytes / arm_tokens, 3)}
        for phase in ("embeddings", "full"):
            train = getattr(cpt, phase)
            plan = plan_phase(train, "bytes", corpus_bytes=corpus_bytes, arm_tokens=arm_tokens,
                              reference_tokens=reference)
            sequences = train.micro_batch_size * train.grad_accum_steps * cfg.compute.nproc_per_node
            tokens_per_step = sequences * cpt.block_size
            seen = plan.seen(plan.steps * tokens_per_step)
            row[phase] = {"configured_steps": plan.configured_steps, "steps": plan.steps,
                          "warmup_steps": plan.warmup_steps, "tokens_per_step": tokens_per_step,
                          "tokens_seen": seen["tokens_seen"], "bytes_seen": seen["bytes_seen"]}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
