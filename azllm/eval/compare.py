"""`join_cpt`: score the base model and every CPT arm on the same bytes and pick an arm.

Bits per byte (DESIGN.md section 6) is comparable across tokenizers because it is
normalised by the UTF-8 bytes of the scored text, not by tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from azllm.config import PipelineConfig


@dataclass
class ArmComparison:
    bpb: dict[str, dict[str, float]]
    """{model: {file: bits per byte}}; models are `base` and each arm."""
    chosen_arm: str
    reason: str


def choose_arm(bpb: dict[str, dict[str, float]], arms: list[str], *, pinned: str = "",
               file: str = "validation") -> tuple[str, str]:
    """The pinned arm, else the arm with the lowest BPB on `file`."""
    if pinned:
        return pinned, f"pinned by cpt.select_arm = {pinned!r}"
    best = min(arms, key=lambda a: bpb[a][file])
    return best, f"lowest {file} BPB ({bpb[best][file]:.4f})"


def compare_arms(cfg: PipelineConfig, *, arm_dirs: dict[str, tuple[Path, Path]], data_dir: Path) -> ArmComparison:
    """BPB of base and arms on validation (and other-domain) text; `arm_dirs`: arm -> (model, tokenizer)."""
    from azllm.data.pipeline import eval_files
    from azllm.eval.bpb import evaluate_bpb_files
    from azllm.model.load import materialize_base_model

    files = eval_files(data_dir)
    base_dir = materialize_base_model(cfg.model)
    models = {"base": (base_dir, base_dir), **arm_dirs}
    bpb = {}
    for name, (model_dir, tokenizer_dir) in models.items():
        scores = evaluate_bpb_files(model_dir, tokenizer_dir, files, max_documents=cfg.eval.max_bpb_documents)
        bpb[name] = {f: round(float(s["bpb"]), 6) for f, s in scores.items()}
        print(f"[azllm] BPB {name}: {bpb[name]}", flush=True)
    arm, reason = choose_arm(bpb, list(arm_dirs), pinned=cfg.cpt.select_arm)
    return ArmComparison(bpb=bpb, chosen_arm=arm, reason=reason)
