"""Is this model demo-scale? A plain verdict from what a run trained, for the summary card and `azllm chat`.

A demo or test run trains a few optimizer steps on a few thousand tokens: its BPB and
generations show the pipeline works, not what the recipe gives, and its chat answers are
not fluent. Saying so beside the numbers keeps a reader from judging the method by them.

    >>> verdict = demo_scale_verdict(cpt_steps=12, cpt_tokens=3_072, sft_steps=8, num_params=134_515_008)
    >>> verdict.demo_scale, verdict.message
    >>> run_quality_verdict(flow.cpt_metrics[flow.chosen_arm], flow.sft_metrics)   # from a run's artifacts
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MIN_CPT_STEPS = 180
"""The smallest real preset (`configs/smollm2.toml`) trains 600 + 1,200 = 1,800 CPT steps;
under a tenth of that is a demo."""
MIN_CPT_TOKENS = 2_900_000
"""A tenth of `smollm2`'s CPT tokens: 1,800 steps x 16 blocks x 1,024 tokens = 29.5M."""
MIN_SFT_STEPS = 50
"""`smollm2` runs 3 epochs of the shared SFT set (hundreds of steps); a few dozen teach no format."""
MIN_PARAMS = 50_000_000
"""Below this the model is a test-size random network (the `tiny` presets), not a language model."""

REAL_PRESETS = ("preset `smollm2` (SmolLM2-135M on the shared corpus, one GPU) or `llama-3.2-1b` "
                "(the case study: 2 nodes x 8 A100 GPUs, compute profile `kubernetes-a100`)")
"""What gives a real assistant (configs/smollm2.toml, configs/llama-3.2-1b.toml)."""


@dataclass(frozen=True)
class QualityVerdict:
    demo_scale: bool
    message: str
    """One plain paragraph; empty when the run is not demo-scale."""
    reasons: list[str] = field(default_factory=list)
    """Each threshold the run falls under, with its numbers."""


def _num(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f}"


def demo_scale_verdict(*, cpt_steps: int | None, cpt_tokens: int | None, sft_steps: int | None,
                       num_params: int | None) -> QualityVerdict:
    """Demo-scale when any known figure is under its threshold (unknown figures, None, are not
    held against the run). The message says what was trained and where a real assistant comes from."""
    reasons = []
    if num_params is not None and num_params < MIN_PARAMS:
        reasons.append(f"a {_num(num_params)}-parameter test model (< {_num(MIN_PARAMS)})")
    if cpt_steps is not None and cpt_steps < MIN_CPT_STEPS:
        reasons.append(f"{_num(cpt_steps)} CPT optimizer steps (< {_num(MIN_CPT_STEPS)})")
    if cpt_tokens is not None and cpt_tokens < MIN_CPT_TOKENS:
        reasons.append(f"{_num(cpt_tokens)} CPT tokens (< {_num(MIN_CPT_TOKENS)})")
    if sft_steps is not None and sft_steps < MIN_SFT_STEPS:
        reasons.append(f"{_num(sft_steps)} SFT steps (< {_num(MIN_SFT_STEPS)})")
    if not reasons:
        return QualityVerdict(demo_scale=False, message="")
    trained = []
    if cpt_steps is not None:
        trained.append(f"{_num(cpt_steps)} CPT optimizer steps"
                       + (f" on {_num(cpt_tokens)} tokens" if cpt_tokens is not None else ""))
    if sft_steps is not None:
        trained.append(f"{_num(sft_steps)} SFT steps")
    if num_params is not None:
        trained.append(f"a {_num(num_params)}-parameter model")
    message = (f"demo-scale: {', '.join(trained)} (below a real run: {'; '.join(reasons)}). The run shows "
               "the pipeline works end to end; fluent answers are not expected and its BPB, chrF and "
               f"generations say nothing about the recipe. For a real assistant use {REAL_PRESETS}.")
    return QualityVerdict(demo_scale=True, message=message, reasons=reasons)


def run_quality_verdict(arm_cpt_metrics: dict[str, dict[str, Any]] | None,
                        sft_metrics: dict[str, Any] | None) -> QualityVerdict:
    """The verdict from a run's artifacts: `cpt_metrics[chosen_arm]` ({"embeddings": ..., "full": ...},
    each `azllm.train.metrics.read_metrics` output) and `sft_metrics` (`run_sft`'s metrics)."""
    phases = [m for m in (arm_cpt_metrics or {}).values() if m]
    steps = [m.get("steps") for m in phases]
    tokens = [m.get("tokens") for m in phases if m.get("steps")]
    params = [m.get("num_params") for m in phases if m.get("num_params")]
    return demo_scale_verdict(
        cpt_steps=sum(s or 0 for s in steps) if phases else None,
        cpt_tokens=sum(t or 0 for t in tokens) if phases else None,
        sft_steps=(sft_metrics or {}).get("global_step"),
        num_params=max(params) if params else None)
