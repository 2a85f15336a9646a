"""Host memory of each CPT worker at startup: peak RSS of every rank just before its first step.

Runs the real worker (``azllm.train.cpt_worker.train``, or the older ``azllm.train.cpt.train``
of a checkout given with ``--repo``) under torchrun with gloo on the CPU, one training step
on random tokens, and records ``ru_maxrss`` of each rank when it asks for its first batch
(after model build, sharding, weight loading, optimizer and resume; before any forward).
Prints one JSON line per rank.

    # this checkout (model built on meta, weights read by rank 0 and broadcast)
    .venv/bin/python benchmarks/startup_memory.py --model smollm2-135m --nproc 2
    # an older checkout, for comparison (every rank loads the whole fp32 model)
    git archive 82ee2fa | tar -x -C /tmp/azllm-before
    .venv/bin/python benchmarks/startup_memory.py --repo /tmp/azllm-before --label before
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEQ = 64


def worker(spec_path: Path, out_dir: Path) -> None:
    """Inside torchrun: record peak RSS at the first batch, then run the trainer of this checkout."""
    raw = json.loads(spec_path.read_text(encoding="utf-8"))  # the flat layout of older checkouts
    try:
        from azllm.config import CptRuntime, PhaseConfig
        from azllm.train import blocks as data_module
        from azllm.train import cpt_worker as worker_module
        from azllm.train.phase import PhaseSpec

        runtime = CptRuntime(**{k: raw.pop(k) for k in ("mixed_precision", "liger", "seed")})
        spec = PhaseSpec(hparams=PhaseConfig(**raw.pop("train")), runtime=runtime, **raw)
    except ImportError:  # a checkout from before azllm.train.phase (flat spec)
        try:
            from azllm.train import blocks as data_module
            from azllm.train import cpt_worker as worker_module
            from azllm.train.launcher import PhaseSpec
        except ImportError:  # a checkout from before the split
            from azllm.train import cpt as worker_module
            from azllm.train.cpt import PhaseSpec

            data_module = worker_module
        spec = PhaseSpec(**raw)
    original = data_module.BlockStream.next_batch
    rank = int(os.environ["RANK"])

    def next_batch(self):
        marker = out_dir / f"rss-rank{rank}.json"
        if not marker.exists():
            rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            marker.write_text(json.dumps({"rank": rank, "peak_rss_gib_before_first_step": rss_gib}))
        return original(self)

    data_module.BlockStream.next_batch = next_batch
    worker_module.train(spec)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m", help="a builtin name or an HF model directory")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--repo", type=Path, default=REPO, help="checkout whose trainer runs (default: this one)")
    ap.add_argument("--label", default="this checkout")
    ap.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker is not None:
        worker(args.worker, args.out)
        return

    import numpy as np
    from transformers import AutoConfig

    sys.path.insert(0, str(REPO))
    from azllm.model.load import resolve_model_dir

    model_dir = resolve_model_dir(args.model)
    config = AutoConfig.from_pretrained(model_dir)
    work = Path(tempfile.mkdtemp(prefix="startup-mem-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)  # models and blocks: GBs
    blocks = work / "blocks.npy"
    np.save(blocks, np.random.default_rng(0).integers(0, config.vocab_size, (8 * args.nproc, SEQ), dtype=np.int32))
    spec = {"phase": "full", "train": {"max_steps": 1, "micro_batch_size": 1, "lr": 1e-5},
            "model_dir": str(model_dir), "blocks_path": str(blocks), "out_dir": str(work / "out"),
            "checkpoint_dir": str(work / "ckpt"), "tensorboard_dir": str(work / "tb"),
            "metrics_path": str(work / "metrics.jsonl"), "mixed_precision": "fp32", "liger": False, "seed": 0}
    (work / "spec.json").write_text(json.dumps(spec))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
           f"--nproc_per_node={args.nproc}", __file__, "--worker", str(work / "spec.json"), "--out", str(work)]
    env = {**os.environ, "PYTHONPATH": str(args.repo.resolve()), "PYTHONDONTWRITEBYTECODE": "1",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"workers failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    full_gib = sum(p.numel() for p in _meta_model(config).parameters()) * 4 / 2**30
    for rank in range(args.nproc):
        record = json.loads((work / f"rss-rank{rank}.json").read_text())
        print(json.dumps({"record": "startup_memory", "code": args.label, "model": args.model,
                          "nproc": args.nproc, "fp32_model_gib": round(full_gib, 3), **record}), flush=True)


def _meta_model(config):
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


if __name__ == "__main__":
    main()
