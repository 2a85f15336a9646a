"""The tokenizer sweep: one BPE training per size (before) vs one training cut to every size (after).

For each preset: the sizes `train_tokenizer` trains (`[tokenizer] vocab_size` + `sweep`) at its
`min_frequency`, on the distinct documents of its `[data] corpus` sources (validation files
left out; the flow trains on the same documents through `sample_texts`). Prints one JSON line
per preset: wall seconds of `train_sweep(derive=False)` (a training per size) and of
`train_sweep()` (one training, the others cut: `azllm.tokenizer.truncate`), and whether every
size's tokenizer.json is byte-identical between the two.

    .venv/bin/python benchmarks/tokenizer_sweep.py                                   # demo + smollm2
    .venv/bin/python benchmarks/tokenizer_sweep.py --preset configs/llama-3.2-1b.toml
"""

from __future__ import annotations

import argparse
import filecmp
import json
import logging
import os
import tempfile
import time
from pathlib import Path


def _documents(sources: list[str]) -> list[str]:
    """Distinct non-empty texts of the corpus sources, in file order (weights ignored, as the sample does)."""
    from azllm.config import resolve_path

    files = []
    for src in sources:
        path = Path(resolve_path(src))
        files += sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    seen: set[str] = set()
    out = []
    for f in files:
        if f.name.startswith("validation"):
            continue
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                text = json.loads(line)["text"] if line.strip() else ""
                if text and text not in seen:
                    seen.add(text)
                    out.append(text)
    return out


def bench(preset: str) -> dict:
    from azllm.config import load_pipeline_config
    from azllm.tokenizer.train import train_sweep

    cfg = load_pipeline_config(preset)
    sizes = sorted({cfg.tokenizer.vocab_size, *cfg.tokenizer.sweep})
    texts = _documents(list(cfg.data.corpus))
    row: dict = {"preset": preset, "sizes": sizes, "min_frequency": cfg.tokenizer.min_frequency,
                 "documents": len(texts), "corpus_mb": round(sum(len(t.encode("utf-8")) for t in texts) / 1e6, 2),
                 "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="azllm-sweep-") as tmp:
        runs = {}
        for name, derive in (("separate", False), ("one_training", True)):
            t0 = time.perf_counter()
            runs[name] = train_sweep(lambda: iter(texts), sizes, min_frequency=cfg.tokenizer.min_frequency,
                                     out_dir=Path(tmp) / name, show_progress=False, derive=derive)
            row[f"{name}_s"] = round(time.perf_counter() - t0, 2)
        row["speedup"] = round(row["separate_s"] / row["one_training_s"], 2)
        row["vocab_sizes_reached"] = [t.vocab_size for t in runs["one_training"]]
        row["identical_tokenizer_json"] = all(
            filecmp.cmp(a.path / "tokenizer.json", b.path / "tokenizer.json", shallow=False)
            for a, b in zip(runs["separate"], runs["one_training"]))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", action="append", help="a preset TOML (repeatable); default demo + smollm2")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for preset in args.preset or ["configs/demo.toml", "configs/smollm2.toml"]:
        print(json.dumps(bench(preset)), flush=True)


if __name__ == "__main__":
    main()
