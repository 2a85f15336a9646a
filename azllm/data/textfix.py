"""Text repair before filtering: ftfy, NFC (via `clean_text`), look-alike letters, PII placeholders.

    >>> repair_text("Azәrbaycan: info@misal.az, +994 50 123 45 67")
    ('Azərbaycan: <email>, <phone>', {'lookalikes': 1, 'emails': 1, 'phones': 1})
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

import ftfy

from azllm.data.clean import clean_text

LOOKALIKES = {
    "\u04d9": "ə", "\u04d8": "Ə",   # Cyrillic schwa: 124 of them in the curated shared corpus (docs/DESIGN.md §4)
    "\u01dd": "ə", "\u018e": "Ə",   # Latin turned e / reversed E, typed for ə when a keyboard lacks it
    "\u0430": "a", "\u0435": "e", "\u043e": "o", "\u0440": "p", "\u0441": "c", "\u0445": "x",
    "\u0443": "y", "\u0456": "i", "\u0458": "j", "\u04bb": "h", "\u04e9": "ö", "\u04af": "ü",
    "\u0410": "A", "\u0415": "E", "\u041e": "O", "\u0420": "P", "\u0421": "C", "\u0425": "X",
    "\u0406": "I", "\u0408": "J", "\u04ba": "H", "\u04e8": "Ö", "\u04ae": "Ü",
}
"""Cyrillic (and two Latin) letters that look like Latin Azerbaijani ones; mapped only inside
words that also hold a Latin letter, so genuine Cyrillic text stays Cyrillic (and is dropped by
the Latin-share filter instead of turned into a mix)."""
_MAP = str.maketrans(LOOKALIKES)
_MIXED_WORD = re.compile(r"\w*(?:[a-zA-Zəçğıöşüİ][\w]*[" + "".join(LOOKALIKES) + r"]|["
                         + "".join(LOOKALIKES) + r"][\w]*[a-zA-Zəçğıöşüİ])\w*")
_HAS_LOOKALIKE = re.compile("[" + "".join(LOOKALIKES) + "\u0307]")
_MOJIBAKE_HINT = re.compile("[ÃÂÄÅÐÑÉâ\u0080-\u009f\ufffd&]")
"""Characters that Azerbaijani text has no use for but UTF-8-read-as-Latin-1 leaves (`É™` for ə,
`Ä±` for ı), or HTML entities: ftfy (1 MB/s) runs only on documents holding one."""
_DOTTED_I = re.compile("i\u0307")
"""`"İ".lower()` in Python gives i + combining dot above; NFC keeps it. Azerbaijani wants plain i."""

EMAIL = re.compile(r"\b[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                   r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}\b")
"""Address shape as in datatrove's PIIFormatter (its `email_regex`), simplified to ASCII."""
PHONE = re.compile(r"(?<![\w+/.])(?<!ISBN )(?<!ISBN: )"
                   r"(?:(?:\+|00)994[\s.-]?|\(?0)\(?\d{2}\)?[\s.-]?\d{3}[\s.-]?\d{2}[\s.-]?\d{2}(?!\d)"
                   r"|(?<![\w+])\+\d{1,3}(?:[\s.-]?\(?\d{2,4}\)?){2,4}(?!\d)")
"""Azerbaijani numbers (+994 / 0 + 2-digit operator or area code + 7 digits, any of space, dot,
dash between groups) and other international numbers written with a leading +. Written here:
datatrove's PIIFormatter replaces e-mails and IP addresses but not phone numbers. Not after
`/`, `.` or `ISBN `: DOIs and ISBNs in the shared corpus's references look like 0XXXXXXXXX."""


def map_lookalikes(text: str) -> tuple[str, int]:
    """Look-alike letters inside Latin words -> Latin; returns the text and how many letters changed."""
    if not _HAS_LOOKALIKE.search(text):
        return text, 0
    changed = 0

    def fix(m: re.Match[str]) -> str:
        nonlocal changed
        word = m.group(0)
        fixed = word.translate(_MAP)
        changed += sum(a != b for a, b in zip(word, fixed))
        return fixed

    text = _MIXED_WORD.sub(fix, text)
    text, dotted = _DOTTED_I.subn("i", text)
    return text, changed + dotted


def replace_pii(text: str) -> tuple[str, int, int]:
    """E-mail addresses -> `<email>`, phone numbers -> `<phone>`; returns the counts too."""
    text, emails = EMAIL.subn("<email>", text) if "@" in text else (text, 0)
    text, phones = PHONE.subn("<phone>", text)
    return text, emails, phones


def repair_text(raw: str, *, fix_encoding: bool = True, lookalikes: bool = True,
                pii: bool = True) -> tuple[str, Counter]:
    """The repaired text and a Counter of what changed (`fixed_encoding`, `lookalikes`, `emails`, `phones`)."""
    counts: Counter = Counter()
    text = raw
    if fix_encoding and _MOJIBAKE_HINT.search(text):
        fixed = ftfy.fix_text(text, normalization="NFC", uncurl_quotes=False)
        counts["fixed_encoding"] += fixed != unicodedata.normalize("NFC", text)
        text = fixed
    text = clean_text(text)
    if lookalikes:
        text, n = map_lookalikes(text)
        counts["lookalikes"] += n
    if pii:
        text, emails, phones = replace_pii(text)
        counts["emails"] += emails
        counts["phones"] += phones
    return text, +counts

