"""Language identification whose models ship in the wheel (no hub download): py3langid or lingua.

Measured here (`benchmarks/langid_compare.py`): every Azerbaijani document of ../shared/data
(7,431), 200 mutated Turkish and 75 English paragraphs written by this project, candidates
{az, tr, en, ru, kk}, first 1,000 characters; speed in MB of whole documents per CPU second:

    backend              Azerbaijani kept    Turkish kept   English kept   Azerbaijani docs MB/cpu-s
    py3langid 0.3.0      7,429 / 7,431       0 / 200        0 / 75         14.3
    lingua 2.1.1 (low)   7,423 / 7,431       0 / 200        0 / 75          8.3

On 1,822 single sentences of the shared news (>= 5 words) py3langid keeps 1,807, lingua
1,814; both keep none of the 33 Turkish sentences. lingua calls some long Azerbaijani legal
articles Turkish with confidence 1.0 (its softmax saturates: appending "61 km/s" to a clause
flips it); py3langid is the default for its document-level accuracy and speed.

    >>> language_of("Azərbaycan Respublikasının paytaxtı Bakı şəhəridir.", ("azerbaijani", "turkish"), 1000)
    ('azerbaijani', 0.9...)
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

ISO_639_1 = {"azerbaijani": "az", "turkish": "tr", "english": "en", "russian": "ru", "kazakh": "kk",
             "kyrgyz": "ky", "tatar": "tt", "persian": "fa", "arabic": "ar", "german": "de", "french": "fr",
             "ukrainian": "uk", "georgian": "ka", "armenian": "hy"}
"""py3langid speaks ISO 639-1; presets name languages in words (lingua's names)."""
SHORT_TEXT_CHARS = 120
"""lingua below this: its high-accuracy mode (lingua's README: low accuracy is for longer text;
measured: it called "İkinci sənəd də var." Turkish at 0.97, high accuracy Azerbaijani)."""


@lru_cache(maxsize=4)
def _py3langid(languages: tuple[str, ...]) -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    unknown = [name for name in languages if name not in ISO_639_1]
    if unknown:
        raise ValueError(f"data.langid_languages: no ISO code known for {unknown}; known: {sorted(ISO_639_1)}")
    ident = LanguageIdentifier.from_pickled_model(MODEL_FILE, norm_probs=True)
    ident.set_languages([ISO_639_1[name] for name in languages])
    return ident


@lru_cache(maxsize=4)
def _lingua(languages: tuple[str, ...], low_accuracy: bool = True) -> Any:
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


def language_of(text: str, languages: tuple[str, ...], max_chars: int,
                backend: str = "py3langid") -> tuple[str, float]:
    """The most likely language (its name) of the first `max_chars` characters, and its probability."""
    sample = text[:max_chars]
    if backend == "lingua":
        best = _lingua(languages, len(sample) >= SHORT_TEXT_CHARS).compute_language_confidence_values(sample)[0]
        return best.language.name.lower(), float(best.value)
    code, prob = _py3langid(languages).classify(sample)
    return next(name for name in languages if ISO_639_1[name] == code), float(prob)
