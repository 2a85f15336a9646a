"""Text normalisation shared by corpus preparation, stats and evaluation.

    >>> clean_text("Salam\\x00  dünya\\r\\n\\n\\n\\nSağ ol ")
    'Salam dünya\\n\\nSağ ol'
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_NEWLINES = re.compile(r"\r\n?")
_HSPACE = re.compile(r"[^\S\n]+")
"""Any whitespace but newline (tabs, NBSP, thin spaces ...): collapsed to one space."""
_SPACE_AROUND_NL = re.compile(r" ?\n ?")
_MANY_NL = re.compile(r"\n{3,}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
"""Unicode category Cc (C0, DEL, C1) except newline; tabs are already spaces by then."""


def clean_text(text: str) -> str:
    """NFC, control characters dropped, horizontal whitespace collapsed, at most one blank line.

    Why NFC: Azerbaijani letters (ə, ş, ç, ğ, ö, ü, ı) arrive both composed and
    decomposed; BPE and dedup must see one form. `\\r\\n` and a bare `\\r` become
    `\\n` before control characters are removed, so old Mac line ends do not glue lines.
    """
    text = unicodedata.normalize("NFC", text)
    text = _NEWLINES.sub("\n", text)
    text = _HSPACE.sub(" ", text)
    text = _CONTROL.sub("", text)
    text = _SPACE_AROUND_NL.sub("\n", text)
    text = _MANY_NL.sub("\n\n", text)
    return text.strip()


def latin_fraction(text: str) -> float:
    """Share of letters that are Latin script, in [0, 1]; 0.0 for text without letters.

    Text without letters (numbers, punctuation) counts as not Latin so the
    `min_latin_fraction` filter drops it: it teaches the model no Azerbaijani.
    """
    letters = [ch for ch in text if ch.isalpha()]
    return sum(map(_is_latin, letters)) / len(letters) if letters else 0.0


def count_words(text: str) -> int:
    """Words as docs/DESIGN.md §9 defines them for fertility: `text.split()` after NFC."""
    return len(unicodedata.normalize("NFC", text).split())


@lru_cache(maxsize=4096)
def _is_latin(ch: str) -> bool:
    return unicodedata.name(ch, "").startswith("LATIN")
