"""`RunSummary`: what a finished (or failed) AzLLMFlow run produced, as one typed value.

The summary card, the model card, the export and the closing lines of a run take a
`RunSummary`, never a FlowSpec, so the artifact names the flow sets are read in one place
(`from_artifacts`) and a renamed artifact fails there, naming it, instead of silently
dropping a card section (tests/test_cards.py checks each field against the flow's `self.X = `):

    >>> summary = RunSummary.from_artifacts(self, config=cfg.to_dict())           # the `end` step
    >>> summary = RunSummary.from_artifacts(run["end"].task.data, config=...)      # the Metaflow client
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

OPTIONAL_AT_END = frozenset({"preference_metrics", "preference_adapter"})
"""Artifacts a complete run may lack: the preference stage's, absent with `[preference] method = "none"`."""


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """The artifacts of one run that cards, the model card and the export read (names = the flow's artifacts)."""

    config: dict[str, Any] = field(default_factory=dict)
    """The resolved preset, as a plain dict (`PipelineConfig.to_dict()`)."""
    chosen_arm: str
    """The arm SFT trained (`join_cpt`)."""
    data_stats: dict[str, Any] | None = None
    """`join_data`: corpus and chat-record splits."""
    fertility: list[dict[str, Any]] | None = None
    """`train_tokenizer`: one row per (tokenizer, evaluation file)."""
    cpt_metrics: dict[str, dict[str, dict]] | None = None
    """`join_cpt`: arm -> phase -> the phase's metrics."""
    arm_bpb: dict[str, dict[str, float]] | None = None
    """`join_cpt`: model (base, arms) -> evaluation file -> bits per byte."""
    arm_token_stats: dict[str, dict] | None = None
    arm_task_scores: list[dict[str, Any]] | None = None
    """`join_cpt`: `[eval] tasks` rows of base and every arm."""
    cpt_models: dict[str, Any] | None = None
    """`join_cpt`: arm -> reference of its CPT model (a self-contained HF directory, tokenizer included)."""
    sft_metrics: dict[str, Any] | None = None
    sft_adapter: Any | None = None
    preference_metrics: dict[str, Any] | None = None
    preference_adapter: Any | None = None
    """None with `[preference] method = "none"` (the preference step stores nothing then)."""
    metrics: dict[str, Any] | None = None
    """`evaluate`: model (base, cpt, sft, preference) -> BPB per file, repetition, chrF, assistant loss."""
    generations: list[dict[str, Any]] | None = None
    task_scores: list[dict[str, Any]] | None = None
    """`evaluate`: `[eval] tasks` rows of base, CPT, SFT (and preference)."""

    @classmethod
    def artifact_names(cls) -> tuple[str, ...]:
        """The flow artifacts a summary holds (every field but `config`, which is the run's Config)."""
        return tuple(f.name for f in fields(cls) if f.name != "config")

    @classmethod
    def from_artifacts(cls, data: Any, *, config: dict[str, Any], complete: bool = False) -> RunSummary:
        """Read each field's artifact off `data` (the `end` step's `self`, or a task's `.data`).

        ``complete`` (the `end` step): every artifact but the preference stage's must be there;
        a missing one raises, naming it. Otherwise (a failed run seen from the client) missing
        artifacts are None and the cards leave their sections out.
        """
        values = {name: _artifact(data, name) for name in cls.artifact_names()}
        missing = [n for n, v in values.items() if v is None and n not in OPTIONAL_AT_END]
        if values["chosen_arm"] is None or (complete and missing):
            raise ValueError(f"the run has no artifact(s) {missing}: RunSummary reads them by name, so a step "
                             "that no longer sets one (renamed or removed) must be changed here too "
                             "(azllm/report/summary.py)")
        return cls(config=config, **values)

    @property
    def stage(self) -> str:
        """The last stage the chosen arm has: `preference`, `sft` or `cpt`."""
        if self.preference_adapter is not None:
            return "preference"
        return "sft" if self.sft_adapter is not None else "cpt"

    @property
    def preset_name(self) -> str:
        return str(self.config.get("name", "?"))

    def chosen_bpb(self, file: str = "validation") -> float | None:
        """The chosen arm's bits per byte on `file` (`join_cpt`)."""
        return ((self.arm_bpb or {}).get(self.chosen_arm) or {}).get(file)

    def tags(self) -> list[str]:
        """The run's user tags: `azllm.model:<arm>` and `azllm.bpb:<chosen arm's validation BPB>` (4 decimals)."""
        bpb = self.chosen_bpb()
        return [f"azllm.model:{self.chosen_arm}"] + ([f"azllm.bpb:{bpb:.4f}"] if bpb is not None else [])


def _artifact(data: Any, name: str) -> Any:
    """An artifact a run may lack (an older run, or a preset without that stage): None then."""
    try:
        return getattr(data, name)
    except (AttributeError, KeyError):
        return None
