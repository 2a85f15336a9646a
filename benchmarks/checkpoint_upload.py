"""What a checkpoint upload to the checkpoint store adds to CPT training steps (issue 24).

Runs the tiny preset's model (configs/tiny.toml: a 2-layer random Llama with the 128,256-token
Llama 3.2 vocabulary, 4.2M parameters, a 50 MB checkpoint with AdamW) through the real
launcher and workers (``run_cpt_phase``, FSDP2 over 2 gloo processes on CPU), phase ``full``,
one checkpoint every ``--save-every`` steps, in three modes:

- ``local``: checkpoints stay in the work directory (one node today);
- ``dir``: every rank stages its files and uploads them to a store directory beside training;
- ``s3``: the same to S3 (a moto server on localhost: HTTP and boto3, no network).

Per mode, one JSON line: ``step_s`` (median seconds of a training step not right after a
save; the save itself excluded), ``step_s_after_save`` (median of the steps right after a save,
which run beside its upload), ``save_s`` (median blocking time of the save call: DCP write,
checksums, gather; not the upload), ``upload_s`` (median background upload time of rank 0's
files, ``rank0_upload_bytes`` of them), ``checkpoint_bytes`` (a local checkpoint, ``local``
mode) and the run's wall time. What an upload adds to training = ``step_s_after_save`` of
``dir``/``s3`` minus ``local``'s (the same steps, no upload), plus ``save_s`` minus ``local``'s.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/checkpoint_upload.py            # ~3 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_mode(mode: str, *, cfg, model_dir: Path, blocks: Path, root: Path, steps: int, save_every: int,
             store_url: str | None) -> dict:
    import dataclasses

    from azllm.train.launcher import run_cpt_phase
    from azllm.train.metrics import read_metrics_records
    from azllm.train.phase import TorchrunLayout

    full = dataclasses.replace(cfg.cpt.full, max_steps=steps, save_every_steps=save_every, log_every_steps=1,
                               warmup_steps=1)
    cpt = dataclasses.replace(cfg.cpt, full=full, runtime=dataclasses.replace(cfg.cpt.runtime, liger=False))
    work = root / mode
    t0 = time.perf_counter()
    run_cpt_phase(cpt, phase="full", model_dir=model_dir, blocks_path=blocks, out_dir=work / "out",
                  work_dir=work / "work", layout=TorchrunLayout(nproc_per_node=2), checkpoint_store=store_url)
    wall = time.perf_counter() - t0
    records = read_metrics_records(work / "work" / "metrics.jsonl")
    saves = {r["step"]: r for r in records if r.get("event") == "checkpoint"}
    steps_at = {r["step"]: r["elapsed_s"] for r in records if "loss" in r and "event" not in r}
    plain, after = [], []
    for s in range(2, steps + 1):
        dt = steps_at[s] - steps_at[s - 1] - (saves[s - 1]["save_s"] if s - 1 in saves else 0.0)
        (after if s - 1 in saves else plain).append(dt)  # the step right after a save runs beside its upload
    log = (work / "work" / "worker.log").read_text()
    uploads = [float(x) for x in re.findall(r"rank 0 uploaded its files of step \d+ \([\d,]+ bytes\) to \S+ in "
                                            r"([\d.]+) s", log)]
    sizes = [int(x.replace(",", "")) for x in re.findall(r"rank 0 uploaded its files of step \d+ \(([\d,]+) bytes\)",
                                                         log)]
    ckpt = work / "work" / "checkpoints"
    local_bytes = max((sum(f.stat().st_size for f in d.iterdir()) for d in ckpt.glob("step-*")), default=None)
    return {"benchmark": "checkpoint_upload", "mode": mode, "steps": steps, "save_every_steps": save_every,
            "saves": len(saves), "step_s": statistics.median(plain),
            "step_s_after_save": statistics.median(after),
            "save_s": statistics.median(r["save_s"] for r in saves.values()),
            "upload_s": statistics.median(uploads) if uploads else None,
            "rank0_upload_bytes": statistics.median(sizes) if sizes else None,
            "checkpoint_bytes": local_bytes, "wall_s": wall, "host_cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--save-every", type=int, default=4)
    parser.add_argument("--modes", default="local,dir,s3")
    args = parser.parse_args(argv)

    from azllm.config import load_pipeline_config
    from azllm.model.load import materialize_base_model

    cfg = load_pipeline_config(REPO / "configs" / "tiny.toml")
    model_dir = materialize_base_model(cfg.model)
    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        blocks = root / "blocks.npy"
        np.save(blocks, np.random.default_rng(0).integers(0, vocab, (512, cfg.cpt.block_size), dtype=np.int32))
        server = None
        for mode in args.modes.split(","):
            url = None
            if mode == "dir":
                url = str(root / "store")
            elif mode == "s3":
                import boto3
                from moto.server import ThreadedMotoServer

                port = _free_port()
                server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
                server.start()
                os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="bench",
                                  AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
                boto3.client("s3").create_bucket(Bucket="bench")
                url = "s3://bench/AzLLMFlow/1/cpt_full/extend"
            record = run_mode(mode, cfg=cfg, model_dir=model_dir, blocks=blocks, root=root, steps=args.steps,
                              save_every=args.save_every, store_url=url)
            print(json.dumps(record), flush=True)
            sys.stdout.flush()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
