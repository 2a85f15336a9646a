"""The `prepare_data` stage: corpus and chat records into one directory the later steps read.

Layout of the directory:
    train.jsonl, validation.jsonl, [other_domain.jsonl]   {"text": ...} per line
    sft_train.jsonl, sft_validation.jsonl                  {"messages": [...]} per line

The flow saves it as two references (`flowutil.save_prepared_data`): `corpus`, train.jsonl
alone (the tokenizer and pack steps read it), and `data`, the small rest every later step loads.
"""

from __future__ import annotations

from pathlib import Path

from azllm.config import DataConfig


def prepare_all(cfg: DataConfig, out_dir: Path) -> dict:
    """Prepare corpus and chat records; return their statistics (a small artifact)."""
    from azllm.data.corpus import prepare_corpus
    from azllm.data.sft import prepare_sft

    corpus = prepare_corpus(cfg, out_dir)
    sft = prepare_sft(cfg, out_dir)
    return {"corpus": corpus.stats, "sft": sft.stats}


def eval_files(data_dir: Path) -> dict[str, Path]:
    """The text files every model is scored on: validation, and other-domain when given."""
    files = {"validation": data_dir / "validation.jsonl"}
    if (data_dir / "other_domain.jsonl").exists():
        files["other_domain"] = data_dir / "other_domain.jsonl"
    return files
