"""The flow's `train_tokenizer` step in one call: train, compare, build each arm's tokenizer.

    >>> res = run_tokenizer_stage(cfg.tokenizer, base_tokenizer="smollm2-135m",
    ...                           arms=("baseline", "extend", "replace"),
    ...                           data=PreparedData.at(Path("runs/data")), out_dir=Path("runs/tokenizer"))
    >>> res.arm_tokenizers["extend"]

Layout of `out_dir`: `bbpe-{size}/` per trained size, `arms/{arm}/` per arm,
`fertility.csv` and `fertility.json` (the card draws the chart from the table: `azllm.report.plots`),
measured on each evaluation file (`PreparedData.eval_files`: validation, other-domain), on its
first `cfg.fertility_max_mb` MB (`documents`, `bytes` and
`capped` columns say on how much).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from azllm.config import TokenizerConfig
from azllm.data.layout import PreparedData
from azllm.tokenizer.load import load_tokenizer
from azllm.tokenizer.metrics import cap_texts, fertility_table
from azllm.tokenizer.strategies import build_arm_tokenizer
from azllm.tokenizer.train import sample_texts, train_sweep

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenizerStageResult:
    arm_tokenizers: dict[str, Path]
    """Tokenizer directory per requested arm."""
    table: list[dict]
    """Fertility table records: one per (tokenizer, eval file), with `tokenizer`, `data` and metrics."""
    vocab_size_reached: int
    """Size reached by the tokenizer trained at `cfg.vocab_size` (specials included)."""
    new_tokenizer: Path
    """The tokenizer trained at `cfg.vocab_size` (the `replace` arm's)."""


def read_jsonl_texts(path: Path, text_field: str = "text") -> Iterator[str]:
    """Document texts of a prepared JSONL file (the data layer's reader: file:line errors)."""
    from azllm.data.readers import iter_jsonl_texts

    return iter_jsonl_texts(path, text_field=text_field)


def run_tokenizer_stage(cfg: TokenizerConfig, *, base_tokenizer: str, arms: Sequence[str], data: PreparedData,
                        out_dir: Path) -> TokenizerStageResult:
    """Train `cfg.vocab_size` (+ `cfg.sweep`) on `data`'s train.jsonl, measure every tokenizer on every
    eval file of `data`, and write one tokenizer directory per arm."""
    import pandas as pd

    out_dir = Path(out_dir)
    train_path, eval_paths = data.require("train", "validation").train, data.eval_files
    sizes = sorted({cfg.vocab_size, *cfg.sweep})
    # One training at the largest size, the others cut from it (train_sweep). Progress is the
    # sample's own bar (bytes of train.jsonl read); the BPE trainer's is off, so no extra pass
    # counts documents for it.
    trained = {t.requested_vocab_size: t for t in train_sweep(
        lambda: sample_texts(train_path, cfg.sample_mb), sizes, min_frequency=cfg.min_frequency,
        out_dir=out_dir, show_progress=False)}
    main = trained[cfg.vocab_size]
    new = load_tokenizer(main.path)
    base = load_tokenizer(base_tokenizer)

    num_new = cfg.extend_num_tokens or cfg.vocab_size // 4
    arm_dirs = {arm: build_arm_tokenizer(arm, base=base, new=new, out_dir=out_dir / "arms" / arm,
                                         num_new_tokens=num_new, min_frequency=cfg.min_frequency,
                                         corpus=sample_texts(train_path, cfg.sample_mb) if arm == "extend" else None)
                for arm in arms}

    candidates = {f"bbpe-{v}": load_tokenizer(t.path) for v, t in trained.items()}
    candidates[f"reference:{cfg.reference}"] = load_tokenizer(cfg.reference)
    candidates[f"base:{base_tokenizer}"] = base
    for arm, d in arm_dirs.items():
        if arm != "replace":  # replace == bbpe-{vocab_size}
            candidates[f"arm:{arm}"] = load_tokenizer(d)
    frames = []
    for data_name, path in eval_paths.items():
        texts, capped = cap_texts(read_jsonl_texts(path), cfg.fertility_max_mb)
        log.info("fertility on %s: %d documents, %.2f MB%s", data_name, len(texts),
                 sum(len(t.encode("utf-8")) for t in texts) / 1e6,
                 f" (capped at fertility_max_mb={cfg.fertility_max_mb:g})" if capped else " (the whole file)")
        df = fertility_table(candidates, texts)
        df.insert(1, "data", data_name)
        df["capped"] = capped
        frames.append(df)
    table = pd.concat(frames, ignore_index=True)
    table.to_csv(out_dir / "fertility.csv", index=False)
    records = json.loads(table.to_json(orient="records"))
    (out_dir / "fertility.json").write_text(json.dumps(records, indent=1))
    log.info("tokenizer stage: %s reached %d tokens\n%s", main.path, main.vocab_size,
             table[["tokenizer", "data", "fertility", "vocab_size"]].to_string(index=False))
    return TokenizerStageResult(arm_tokenizers=arm_dirs, table=records,
                                vocab_size_reached=main.vocab_size, new_tokenizer=main.path)
