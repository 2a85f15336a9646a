"""Equal compute across arms (``[cpt] budget``): how many steps an arm's phase runs, and what
it saw (tokens, UTF-8 bytes), derived before torchrun starts.

All arms pack the same training corpus, each with its own tokenizer, into blocks of the same
size, so one optimizer step is the same number of tokens in every arm
(micro_batch x block_size x grad_accum x world size; the arms run on the same compute profile).

- ``steps``: every arm runs the configured ``max_steps``.
- ``tokens``: the same steps: equal steps are equal training tokens; only the statement of
  what was held equal differs.
- ``bytes``: the reference is the text the *baseline* tokenizer (the base model's) covers in
  the configured steps. An arm whose tokenizer needs fewer tokens for the same corpus sees more
  bytes per token, so it runs proportionally fewer steps::

      steps_arm = round(max_steps x arm_tokens / baseline_tokens)      (at least 1)

  where ``*_tokens`` are the packed token counts of the same corpus (EOS included). With
  bytes_per_token = corpus_bytes / tokens this is ``max_steps x bpt_baseline / bpt_arm``: the
  arm's ``bytes_seen`` is within half a step's bytes of the baseline's. Warm-up steps scale by
  the same ratio, so the schedule has the same shape in bytes.

``bytes_seen`` = tokens_seen x the arm's corpus bytes per token: an estimate, exact on average
over the corpus (blocks are drawn at random, so a run's blocks may hold a little more or less).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from azllm.config import PhaseConfig


@dataclass(frozen=True, kw_only=True)
class PhaseBudget:
    """One phase of one arm under ``budget``: its steps, and what the arm's tokenizer makes of
    the corpus next to the reference (baseline) tokenizer."""

    budget: str
    configured_steps: int
    steps: int
    configured_warmup_steps: int
    warmup_steps: int
    corpus_bytes: int
    arm_tokens: int
    """Packed tokens of the corpus with this arm's tokenizer (EOS included)."""
    reference_tokens: int | None
    """The same with the baseline tokenizer; None unless budget = bytes."""

    @property
    def bytes_per_token(self) -> float:
        return self.corpus_bytes / self.arm_tokens

    def apply(self, train: PhaseConfig) -> PhaseConfig:
        """``train`` with this budget's steps (unchanged for steps/tokens)."""
        return dataclasses.replace(train, max_steps=self.steps, warmup_steps=self.warmup_steps)

    def seen(self, tokens_seen: int) -> dict:
        """What the phase's metrics record so arms can be compared at equal steps/tokens/bytes."""
        return {"budget": self.budget, "tokens_seen": tokens_seen,
                "bytes_seen": round(tokens_seen * self.bytes_per_token),
                "bytes_per_token": self.bytes_per_token, "configured_steps": self.configured_steps,
                "budget_steps": self.steps, "corpus_bytes": self.corpus_bytes, "arm_tokens": self.arm_tokens,
                "reference_tokens": self.reference_tokens}

    def describe(self, phase: str) -> str:
        line = (f"[cpt] budget={self.budget} phase={phase}: {self.steps} steps "
                f"(configured {self.configured_steps}); corpus {self.corpus_bytes:,} bytes = "
                f"{self.arm_tokens:,} tokens, {self.bytes_per_token:.3f} bytes/token")
        if self.reference_tokens is not None:
            line += (f"; baseline {self.reference_tokens:,} tokens, "
                     f"{self.corpus_bytes / self.reference_tokens:.3f} bytes/token")
        return line


def plan_phase(train: PhaseConfig, budget: str, *, corpus_bytes: int, arm_tokens: int,
               reference_tokens: int | None = None) -> PhaseBudget:
    """The steps of one phase under ``budget`` (module docstring); ``reference_tokens`` is
    needed for ``bytes`` only."""
    steps, warmup = train.max_steps, train.warmup_steps
    if budget == "bytes":
        assert reference_tokens and reference_tokens > 0, "budget='bytes' needs the baseline's token count"
        ratio = arm_tokens / reference_tokens
        steps = max(1, math.floor(train.max_steps * ratio + 0.5))
        warmup = min(math.floor(train.warmup_steps * ratio + 0.5), steps - 1)
    else:
        reference_tokens = None
    return PhaseBudget(budget=budget, configured_steps=train.max_steps, steps=steps,
                       configured_warmup_steps=train.warmup_steps, warmup_steps=warmup,
                       corpus_bytes=corpus_bytes, arm_tokens=arm_tokens, reference_tokens=reference_tokens)
