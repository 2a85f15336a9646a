"""Time of BPB scoring per `[eval] batch_size`, through the pipeline's own path.

The model is loaded once through `azllm.eval.load.load_model_and_tokenizer` on the host's
placement (`azllm.model.device.select_placement`: bf16 on CUDA, fp32 on CPU), then
`azllm.eval.bpb.evaluate_bpb` scores the same documents at each batch size (after one
untimed warm-up pass on two documents). Every line also carries the BPB, so the lines show
that the batch size changes the time, not the figure.

stdout is JSON lines only (progress and logs go to stderr):

    .venv/bin/python benchmarks/bpb_scoring.py                              # SmolLM2-135M, 40 docs, 1 vs 8
    .venv/bin/python benchmarks/bpb_scoring.py --documents 10 --batch-sizes 1,4,16
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="a builtin model name or a model directory")
    parser.add_argument("--data", default=str(SHARED / "az_eval_other_domain.jsonl"))
    parser.add_argument("--documents", type=int, default=40, help="first N documents scored")
    parser.add_argument("--batch-sizes", default="1,8", help="comma-separated batch sizes")
    args = parser.parse_args(argv)

    import torch

    from azllm.eval.bpb import evaluate_bpb, read_texts
    from azllm.eval.load import load_model_and_tokenizer
    from azllm.model.device import select_placement
    from azllm.model.registry import resolve_model_dir

    model_dir = resolve_model_dir(args.model)
    placement = select_placement()
    model, tokenizer = load_model_and_tokenizer(model_dir, model_dir, placement=placement)
    texts = read_texts(args.data)[:args.documents]
    evaluate_bpb(model, tokenizer, texts[:2], batch_size=2, show_progress=False)  # warm-up
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        print(f"bpb_scoring: batch_size {batch_size} ...", file=sys.stderr, flush=True)
        if placement.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        result = evaluate_bpb(model, tokenizer, texts, batch_size=batch_size, show_progress=False)
        if placement.is_cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        print(json.dumps({"record": "bpb_scoring", "model": args.model, "device": placement.device,
                          "dtype": placement.dtype, "torch_threads": torch.get_num_threads(),
                          "batch_size": batch_size, "documents": result["documents"], "tokens": result["tokens"],
                          "bytes": result["bytes"], "bpb": result["bpb"], "seconds": round(seconds, 3),
                          "tokens_per_s": round(result["tokens"] / seconds, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
