"""Verifiable rewards for an Azerbaijani assistant's answer: each a small pure function, 0-1.

They check, without a human label, the failures users see most after SFT on a low-resource
language (docs/DESIGN.md §8.1): an answer that drifts into Turkish or English, one that loops,
one that answers beside the question, one that never ends its turn. GRPO sums them with the
preset's weights (`[preference] weight_*`); DPO pair building uses the same checks to decide
whether a sampled answer is worse than the reference (`answer_verdict`).

    >>> azerbaijani_reward("Bakı Azərbaycanın paytaxtıdır və ən böyük şəhəridir.")
    1.0
    >>> azerbaijani_reward("İstanbul Türkiye'nin en kalabalık şehridir.")
    0.0
    >>> no_repetition_reward("bir iki üç dörd bir iki üç dörd")
    0.0
"""

from __future__ import annotations

from collections.abc import Sequence

from azllm.data.langid import language_of
from azllm.eval.generation import repetition_metrics

CANDIDATE_LANGUAGES = ("azerbaijani", "turkish", "english", "russian")
"""Languages an Azerbaijani assistant drifts into (Turkish above all: close, and abundant in
pretraining data); language ID picks the likeliest of these."""
LANGID_MAX_CHARS = 1000


def answer_language(text: str) -> str | None:
    """The likeliest of CANDIDATE_LANGUAGES for `text` (py3langid), None for an answer without letters."""
    if not any(ch.isalpha() for ch in text):
        return None
    return language_of(text, CANDIDATE_LANGUAGES, LANGID_MAX_CHARS)[0]


def azerbaijani_reward(text: str) -> float:
    """1 when language ID calls the answer Azerbaijani, else 0 (Turkish, English, Russian, no letters)."""
    return 1.0 if answer_language(text) == "azerbaijani" else 0.0


def repeats_a_4gram(text: str) -> bool:
    """True when a word 4-gram of the answer repeats an earlier one (`repeated_4gram_share` > 0, §9)."""
    share = repetition_metrics(text)["repeated_4gram_share"]
    return share is not None and share > 0


def no_repetition_reward(text: str) -> float:
    """1 when no word 4-gram repeats (an answer under 4 words repeats nothing), 0 for a looped answer."""
    return 0.0 if repeats_a_4gram(text) else 1.0


def chrf_reward(text: str, reference: str) -> float:
    """Sentence chrF of the answer against the reference (sacrebleu defaults, §9), scaled to 0-1."""
    from sacrebleu.metrics import CHRF

    return CHRF().sentence_score(text, [reference]).score / 100.0


def eot_reward(completion_ids: Sequence[int], eot_id: int, max_tokens: int) -> float:
    """1 when the generated tokens end with `<|eot_id|>` (`eot_id`) within `max_tokens`, else 0
    (cut off by the length limit, or ended by another stop token)."""
    return 1.0 if 0 < len(completion_ids) <= max_tokens and completion_ids[-1] == eot_id else 0.0


def answer_verdict(text: str, reference: str, margin: float) -> str | None:
    """Why `text` is worse than `reference` by at least the margin, or None when it is not.

    Worse: not Azerbaijani, a repeated word 4-gram, or chrF against the reference (0-100) below
    100 - `margin` (the reference itself scores 100). Used to keep a sampled answer as DPO's
    `rejected`."""
    language = answer_language(text)
    if language != "azerbaijani":
        return f"language {language or 'none'}"
    if repeats_a_4gram(text):
        return "repeated 4-gram"
    score = 100.0 * chrf_reward(text, reference)
    if score < 100.0 - margin:
        return f"chrF {score:.1f} < {100.0 - margin:.1f}"
    return None
