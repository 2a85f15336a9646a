"""Language identification with lingua (its models ship in the wheel: no hub download).

Measured on this project's data (benchmarks/data_prepare.py and the tests): lingua's
low-accuracy mode over a small candidate set keeps 224/225 of the shared other-domain
news and drops Turkish paragraphs, at ~2 MB/s per core (high-accuracy mode: ~0.3 MB/s).

    >>> language_of("Bu gün hava çox gözəldir və biz parka getdik.", ("azerbaijani", "turkish"), 1000)
    ('azerbaijani', 0.9...)
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

SHORT_TEXT_CHARS = 120
"""Below this, lingua's high-accuracy mode (lingua's README: low accuracy is for longer text;
measured: it called "İkinci sənəd də var." Turkish at 0.97, high accuracy Azerbaijani)."""


@lru_cache(maxsize=4)
def detector(languages: tuple[str, ...], low_accuracy: bool = True) -> Any:
    """One lingua detector per process, candidate set and mode (building it loads the models: ~1 s)."""
    from lingua import Language, LanguageDetectorBuilder

    try:
        chosen = [getattr(Language, name.upper()) for name in languages]
    except AttributeError as e:
        known = sorted(lang.name.lower() for lang in Language.all())
        raise ValueError(f"data.langid_languages: lingua has no language {e.name.lower()!r}; "
                         f"known: {known}") from None
    builder = LanguageDetectorBuilder.from_languages(*chosen)
    return (builder.with_low_accuracy_mode() if low_accuracy else builder).build()


def language_of(text: str, languages: tuple[str, ...], max_chars: int) -> tuple[str, float]:
    """The most likely language of the first `max_chars` characters and its confidence in [0, 1]."""
    sample = text[:max_chars]
    best = detector(languages, len(sample) >= SHORT_TEXT_CHARS).compute_language_confidence_values(sample)[0]
    return best.language.name.lower(), float(best.value)
