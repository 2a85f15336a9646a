"""CPT training throughput through the project's own trainer (`azllm.train.cpt_worker.train`).

Every measurement is one call of the real worker, ``azllm.train.cpt_worker.train(PhaseSpec)``,
in a fresh child process: the same meta-device build and weight broadcast, Liger patching,
activation checkpointing, ``torch.compile`` and FSDP2 ``fully_shard`` (torchtitan's order) with
the bf16 ``MixedPrecisionPolicy`` on GPU, AdamW (fused on CUDA), cosine schedule, block stream
and loop the pipeline runs. The spec's ``save_outputs=False`` skips the phase-end I/O (the final
DCP checkpoint and the HF export: tens of GB for a 1B model, not training throughput). A
fresh process per run matters: Liger patches ``transformers.models.llama.modeling_llama``
globally, and an out-of-memory run leaves the CUDA allocator fragmented.

Prints one JSON line per run (``record: "run"``: one configuration x vocabulary x batch)
and, after each batch sweep, one ``record: "sweep"`` line with the largest batch that fit
and the best tokens/s. A sweep goes up the batch list and stops at the first
``torch.cuda.OutOfMemoryError``.

    # CPU, tiny shape, a few steps (what tests/test_benchmarks.py runs)
    .venv/bin/python benchmarks/cpt_throughput.py --shape tiny --steps 2 --warmup-steps 1
    # one H100: Llama-3.2-1B shape, both vocabularies, plain vs Liger vs Liger + full AC
    python3 benchmarks/cpt_throughput.py --shape llama-3.2-1b --vocab 128256 --configs plain,liger,liger-ac \\
        --batch-sizes 8,16,18,20,24

Configurations (``--configs``) are the trainer's own options (``CONFIGS``): ``liger``,
``[cpt.runtime] activation_checkpointing`` (``ac`` = full, ``sac`` = selective) and ``[cpt.runtime] compile``.

tokens/s is per GPU (one process), over the steps after ``--warmup-steps``; MFU = tokens/s x
FLOPs per token / bf16 peak, FLOPs per token = 4 N_mm + 2 N_mm_trainable + 12 L T H
(docs/DESIGN.md §9, azllm.train.flops; null on CPU). ``peak_mem_gib`` is
``torch.cuda.max_memory_allocated`` on GPU and the child's peak RSS on CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "BENCH_RESULT "
FAKE_OOM_ENV = "AZLLM_BENCH_FAKE_OOM_ABOVE"
"""Test hook: runs with a batch above this raise torch.cuda.OutOfMemoryError (the OOM path on CPU)."""

SHAPES = {
    # meta-llama/Llama-3.2-1B config.json: 1.24B parameters with the 128,256 vocabulary, tied head
    "llama-3.2-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=64, rms_norm_eps=1e-5,
                         tie_word_embeddings=True, max_position_embeddings=131072,
                         rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                          "original_max_position_embeddings": 8192}),
    # CI shape: seconds per run on one CPU core
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5, tie_word_embeddings=True,
                 max_position_embeddings=4096),
}
SHAPE_DEFAULTS = {  # vocab list, sequence length, batch sizes
    "llama-3.2-1b": ("128256,100000", 2048, "4,8,12,16,18,20,24,28,32"),
    "tiny": ("1024", 64, "1,2"),
}
CONFIGS = {
    # name: the trainer's options (liger, [cpt.runtime] activation_checkpointing, [cpt.runtime] compile)
    "plain": (False, "none", False),
    "liger": (True, "none", False),
    "compile": (False, "none", True),
    "liger-compile": (True, "none", True),
    "ac": (False, "full", False),
    "liger-ac": (True, "full", False),
    "sac": (False, "selective", False),
    "liger-sac": (True, "selective", False),  # the 1B and 8B presets
    "liger-ac-compile": (True, "full", True),
}


# ---------------------------------------------------------------------------
# Inputs: a random-weight model directory and random token blocks
# ---------------------------------------------------------------------------


def padded_vocab(vocab: int, multiple: int) -> int:
    """Embedding rows the pipeline gives a tokenizer of ``vocab`` tokens (CptConfig.pad_to_multiple_of)."""
    return -(-vocab // multiple) * multiple


def make_model_dir(root: Path, shape: str, model_vocab: int, seed: int) -> Path:
    """A Llama of ``shape`` with random weights saved as an HF directory (cached under ``root``)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = root / f"{shape}-v{model_vocab}-s{seed}"
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    config = LlamaConfig(vocab_size=model_vocab, bos_token_id=0, eos_token_id=1, **SHAPES[shape])
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    tmp = root / f".{out.name}.tmp-{os.getpid()}"
    model.save_pretrained(tmp, safe_serialization=True)
    os.replace(tmp, out)
    return out


def make_blocks(root: Path, vocab: int, seq: int, num_blocks: int, seed: int) -> Path:
    """(num_blocks, seq) int32 uniform random token ids below ``vocab``, as pack_corpus writes them."""
    import numpy as np

    path = root / f"blocks-v{vocab}-t{seq}-n{num_blocks}-s{seed}.npy"
    if not path.is_file():
        rng = np.random.default_rng(seed)
        np.save(path, rng.integers(0, vocab, size=(num_blocks, seq), dtype=np.int32))
    return path


# ---------------------------------------------------------------------------
# Child: one run of the trainer
# ---------------------------------------------------------------------------


def _raise_oom_inside_train(worker) -> None:
    """For tests/test_benchmarks.py on CPU: raise CUDA's OOM error from inside train()."""
    import torch

    def shard_model(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (simulated by {FAKE_OOM_ENV})")

    worker.shard_model = shard_model


def run_child(job_path: Path) -> None:
    """Run ``train(spec)`` once; print one RESULT_PREFIX line: ok with the metrics, oom, or error."""
    import torch

    from azllm.train import cpt_worker
    from azllm.train.flops import peak_flops
    from azllm.train.phase import PhaseSpec

    job = json.loads(job_path.read_text(encoding="utf-8"))
    spec_path = job_path.with_name("spec.json")
    spec_path.write_text(json.dumps(job["spec"]), encoding="utf-8")
    spec = PhaseSpec.from_json(spec_path)  # rebuilds (and checks) hparams and runtime
    fake_oom_above = os.environ.get(FAKE_OOM_ENV)
    if fake_oom_above and spec.hparams.micro_batch_size > int(fake_oom_above):
        _raise_oom_inside_train(cpt_worker)

    result: dict = {"status": "ok"}
    try:
        cpt_worker.train(spec)
    except torch.cuda.OutOfMemoryError as e:
        result = {"status": "oom", "reason": str(e).splitlines()[0][:300]}
    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    result["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    if result["status"] == "ok":
        result.update(summarise(Path(spec.metrics_path), warmup_steps=job["warmup_steps"],
                                peak=peak_flops(device)))
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def summarise(metrics_path: Path, *, warmup_steps: int, peak: float | None) -> dict:
    """Per-step trainer records (log_every_steps=1) -> throughput over the steps after warmup."""
    records = [json.loads(line) for line in metrics_path.read_text(encoding="utf-8").splitlines()]
    start = next(r for r in records if r.get("event") == "start")
    steps = [r for r in records if "event" not in r]
    timed = [r for r in steps if r["step"] > warmup_steps] or steps[-1:]
    tokens_per_step = start["tokens_per_step"]
    step_time_s = sum(tokens_per_step / r["tokens_per_s"] for r in timed) / len(timed)
    tokens_per_s = tokens_per_step / step_time_s
    return {"tokens_per_s": tokens_per_s, "step_time_s": step_time_s,
            "peak_mem_gib": max(r["peak_mem_gib"] for r in steps),
            "mfu": None if peak is None else tokens_per_s * start["flops_per_token"] / peak,
            "loss_first": steps[0]["loss"], "loss_last": steps[-1]["loss"],
            "num_params": start["num_params"], "liger_applied": start["liger"], "bf16": start["bf16"],
            "timed_steps": len(timed)}


# ---------------------------------------------------------------------------
# Parent: sweeps
# ---------------------------------------------------------------------------


def run_one(work: Path, *, config: str, model_dir: Path, blocks: Path, batch: int, args) -> dict:
    """One trainer run in a child process; returns the child's result (or an error record)."""
    from azllm.config import CptRuntime, PhaseConfig

    liger, ac, compile_layers = CONFIGS[config]
    run_dir = Path(tempfile.mkdtemp(prefix=f"{config}-b{batch}-", dir=work))
    train = PhaseConfig(lr=args.lr, max_steps=args.warmup_steps + args.steps, warmup_steps=0,
                        micro_batch_size=batch, log_every_steps=1, save_every_steps=0)
    runtime = CptRuntime(mixed_precision="auto", liger=liger, seed=args.seed, activation_checkpointing=ac,
                         compile=compile_layers)
    spec = dict(phase="full", hparams=asdict(train), runtime=asdict(runtime), model_dir=str(model_dir),
                blocks_path=str(blocks), out_dir=str(run_dir / "out"), checkpoint_dir=str(run_dir / "checkpoints"),
                tensorboard_dir=str(run_dir / "tensorboard"), metrics_path=str(run_dir / "metrics.jsonl"),
                save_outputs=False)
    job = run_dir / "job.json"
    job.write_text(json.dumps({"spec": spec, "warmup_steps": args.warmup_steps}), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # the trainer runs as rank 0 of 1 on its own port
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, __file__, "--child", str(job)], env=env, capture_output=True,
                              text=True, timeout=args.run_timeout_s)
    except subprocess.TimeoutExpired:
        return {"status": "error", "reason": f"run took over --run-timeout-s={args.run_timeout_s}",
                "wall_s": time.perf_counter() - t0}
    (run_dir / "child.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode == 0 and lines:
        result = json.loads(lines[-1][len(RESULT_PREFIX):])
    else:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        oom = any("OutOfMemoryError" in ln or "out of memory" in ln for ln in tail)
        result = {"status": "oom" if oom else "error", "reason": " | ".join(tail)[-600:],
                  "returncode": proc.returncode}
    if liger and result["status"] == "ok" and not result["liger_applied"]:  # do not label plain numbers liger
        result.update(status="error", reason="Liger was requested but not applied (liger_kernel import or "
                                             "model type: see child.log in the run directory)")
    result["wall_s"] = time.perf_counter() - t0
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    ap.add_argument("--vocab", default=None,
                    help="comma-separated tokenizer vocabulary sizes (padded to --pad-vocab-to); "
                         "default 128256,100000 for llama-3.2-1b, 1024 for tiny")
    ap.add_argument("--pad-vocab-to", type=int, default=64, help="embedding rows multiple (1 = no padding)")
    ap.add_argument("--seq", type=int, default=None, help="tokens per sequence; default 2048 (1b), 64 (tiny)")
    ap.add_argument("--batch-sizes", default=None, help="comma-separated micro-batch sizes, swept upwards "
                                                        "until the first out-of-memory")
    ap.add_argument("--configs", default="plain,liger", help=f"comma-separated, from {', '.join(CONFIGS)}")
    ap.add_argument("--steps", type=int, default=10, help="timed optimizer steps per run")
    ap.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first (compile, allocator)")
    ap.add_argument("--lr", type=float, default=2.4e-4, help="peak LR (the full phase's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work-dir", type=Path, default=None,
                    help="model directories, blocks and run logs (cached); default: a temporary directory")
    ap.add_argument("--run-timeout-s", type=int, default=900, help="per-run child process limit")
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if str(REPO) not in sys.path:  # a GPU host runs the checkout without installing azllm
        sys.path.insert(0, str(REPO))
    if args.child is not None:
        run_child(args.child)
        return

    import torch

    vocab_default, seq_default, batch_default = SHAPE_DEFAULTS[args.shape]
    vocabs = [int(v) for v in (args.vocab or vocab_default).split(",")]
    seq = args.seq or seq_default
    batch_sizes = sorted({int(b) for b in (args.batch_sizes or batch_default).split(",")})
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        ap.error(f"--configs {unknown} unknown; accepted: {', '.join(CONFIGS)}")
    if args.steps < 1 or args.warmup_steps < 0:
        ap.error(f"--steps must be >= 1 and --warmup-steps >= 0, got {args.steps}, {args.warmup_steps}")
    # is_available() makes no CUDA context; get_device_name() would, and hold GPU memory in this
    # parent for the whole sweep: the children report the device name instead
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="cpt-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"[bench] device={device} shape={args.shape} vocabs={vocabs} seq={seq} batches={batch_sizes} "
          f"configs={configs} steps={args.warmup_steps}+{args.steps} work_dir={work}", file=sys.stderr, flush=True)
    for vocab in vocabs:
        model_vocab = padded_vocab(vocab, args.pad_vocab_to)
        model_dir = make_model_dir(work, args.shape, model_vocab, args.seed)
        blocks = make_blocks(work, vocab, seq, max(batch_sizes) * (args.steps + args.warmup_steps), args.seed)
        for config in configs:
            base = {"device": device, "shape": args.shape, "config": config, "seq": seq, "vocab": vocab,
                    "model_vocab": model_vocab}
            liger = CONFIGS[config][0]
            if liger and not cuda:
                print(json.dumps({"record": "sweep", **base, "status": "skipped", "largest_batch": None,
                                  "reason": "Liger needs CUDA (Triton); no GPU here"}), flush=True)
                continue
            largest, best = None, None
            for batch in batch_sizes:
                result = run_one(work, config=config, model_dir=model_dir, blocks=blocks, batch=batch, args=args)
                if result["status"] == "ok":
                    largest = batch
                    if best is None or result["tokens_per_s"] > best["tokens_per_s"]:
                        best = {"batch": batch, **result}
                print(json.dumps({"record": "run", **base, "batch": batch, "largest_batch": largest,
                                  **result}), flush=True)
                if result["status"] != "ok":
                    break  # larger batches do not fit either (or the same error repeats)
            if best is not None:
                base["device"] = best["device"]
            print(json.dumps({"record": "sweep", **base, "status": "ok" if best else "failed",
                              "largest_batch": largest,
                              **({k: best[k] for k in ("batch", "tokens_per_s", "step_time_s", "peak_mem_gib",
                                                       "mfu", "loss_first", "loss_last")} if best else {})}),
                  flush=True)


if __name__ == "__main__":
    main()
