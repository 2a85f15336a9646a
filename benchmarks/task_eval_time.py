"""Time of a preset's task evaluation (lm-evaluation-harness) for one model, as join_cpt and
evaluate run it per model (load, wrap in HFLM, score `[eval] tasks`, release): wall and CPU seconds.

The demo scores 7 models (base and 3 arms in join_cpt; base, CPT, SFT in evaluate), so the time it
adds to `make demo` is about 7 x the per-model figure. stdout is one JSON line per repetition.

    .venv/bin/python benchmarks/task_eval_time.py --config configs/demo.toml            # SmolLM2-135M
    .venv/bin/python benchmarks/task_eval_time.py --config configs/demo.toml --tasks sib200_azj --limit 4
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import replace


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.toml")
    parser.add_argument("--tasks", help="comma-separated; default: the preset's [eval] tasks")
    parser.add_argument("--limit", type=int, help="default: the preset's [eval] limit")
    parser.add_argument("--repeat", type=int, default=2, help="the first includes imports and caches")
    args = parser.parse_args()

    from azllm.config import load_pipeline_config
    from azllm.eval.report import ModelSpec
    from azllm.eval.tasks import evaluate_task_models
    from azllm.model.load import materialize_base_model

    cfg = load_pipeline_config(args.config)
    ev = cfg.eval
    if args.tasks:
        ev = replace(ev, tasks=tuple(args.tasks.split(",")))
    if args.limit:
        ev = replace(ev, limit=args.limit)
    base = materialize_base_model(cfg.model)
    for i in range(args.repeat):
        wall, cpu = time.time(), cpu_seconds()
        scores = evaluate_task_models(ev, {"base": ModelSpec(model_dir=base, tokenizer_dir=base)})
        print(json.dumps({"preset": cfg.name, "model": cfg.model.name, "tasks": list(ev.tasks), "limit": ev.limit,
                          "num_fewshot": ev.num_fewshot, "repetition": i, "wall_s": round(time.time() - wall, 1),
                          "cpu_s": round(cpu_seconds() - cpu, 1), "load_avg_1min": round(_load(), 1),
                          "scores": {r["task"]: round(r["value"], 4) for r in scores.rows if r["primary"]}}),
              flush=True)


def _load() -> float:
    import os

    return os.getloadavg()[0]


if __name__ == "__main__":
    main()
