"""What a text's writing system says about its language, before any statistics.

Some scripts are written by one language only (kana: Japanese; Hangul: Korean; Thai, Greek, ...):
a text written mainly in one of them is in that language however short it is. Others are shared
(Latin, Cyrillic, Arabic by Arabic/Persian/Urdu, Devanagari by Hindi/Marathi, Han characters by
Chinese and Japanese): there only the words can tell, and short texts cannot. Han is the hard case:
lingua answers Chinese with confidence 1.0 for any text without kana, but a short Japanese text
("美味", "最高") may have no kana at all.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import regex

# the scripts that, among the 75 languages lingua knows, one language alone is written in
# (kana counts with the Han characters beside it, Hangul too: Japanese and Korean mix them in)
SCRIPT_LANGUAGE = {
    "kana": "ja",
    "hangul": "ko",
    "thai": "th",
    "greek": "el",
    "armenian": "hy",
    "hebrew": "he",
    "georgian": "ka",
    "bengali": "bn",
    "gujarati": "gu",
    "gurmukhi": "pa",
    "tamil": "ta",
    "telugu": "te",
}
_OWN = {
    "kana": r"\p{Hiragana}\p{Katakana}",
    "hangul": r"\p{Hangul}",
    "han": r"\p{Han}",
    **{name: rf"\p{{{name.capitalize()}}}" for name in SCRIPT_LANGUAGE if name not in ("kana", "hangul")},
}
# Unicode blocks holding those scripts, for a fast first scan (the stdlib `re` scans plain ranges
# several times faster than `regex` scans script properties); what it finds is then sorted by script
# with the exact properties, so a block's other characters count for no script
_BLOCKS = (
    "\u0370-\u03ff\u1f00-\u1fff"  # Greek
    "\u0530-\u058f\ufb13-\ufb17"  # Armenian
    "\u0590-\u05ff\ufb1d-\ufb4f"  # Hebrew
    "\u0980-\u0c7f"  # Bengali, Gurmukhi, Gujarati, Oriya, Tamil, Telugu
    "\u0e00-\u0e7f"  # Thai
    "\u10a0-\u10ff\u1c90-\u1cbf\u2d00-\u2d2f"  # Georgian
    "\u1100-\u11ff\u3130-\u318f\ua960-\ua97f\uac00-\ud7ff\uffa0-\uffdc"  # Hangul
    "\u2e80-\u2fdf\u3005-\u3007\u3021-\u3029\u3038-\u303b"  # Han radicals and marks
    "\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f"  # kana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"  # Han
)
_SPECIAL = re.compile(f"[{_BLOCKS}]+")
_EACH = {name: regex.compile(f"[{chars}]+") for name, chars in _OWN.items()}
_LETTERS = regex.compile(r"\p{L}+")


class Script(NamedTuple):
    """The main script of a text and its length."""

    #: a key of SCRIPT_LANGUAGE, "han" (Han characters, no kana or Hangul), "shared", or None (no letters)
    name: str | None
    #: letters in the main script (for kana and Hangul, with the Han characters beside them); not
    #: counted, 0, for `shared`, which is judged by words
    letters: int
    #: whitespace-separated words with at least one letter, counted up to `max_words`
    words: int


def main_script(text: str, max_words: int | None = None) -> Script:
    """The script most of the text's letters are written in; words are counted up to `max_words`
    (None: all of them)."""
    words = 0
    for word in text.split():
        if _LETTERS.search(word):
            words += 1
            if max_words is not None and words >= max_words:
                break
    special = "".join(_SPECIAL.findall(text))
    if not special:  # most texts: Latin, Cyrillic, Arabic, ... letters only (or none)
        return Script("shared" if words else None, 0, words)
    counts: dict[str, int] = {}
    for name, pattern in _EACH.items():
        n = len(special) - len(pattern.sub("", special))
        if n:
            counts[name] = n
    han = counts.pop("han", 0)
    for mixed in ("kana", "hangul"):  # Japanese and Korean write Han characters among their own
        if counts.get(mixed):
            counts[mixed] += han
            han = 0
            break
    if han:
        counts["han"] = han
    shared = len(text) - len(_LETTERS.sub("", text)) - sum(counts.values())
    if not counts:
        return Script("shared" if shared > 0 else None, 0, words)
    name = max(counts, key=lambda k: (counts[k], k))
    # ties go to the shared scripts: a one-word "Pho很好" is not claimed by Han
    if shared >= counts[name]:
        return Script("shared", 0, words)
    return Script(name, counts[name], words)
