"""What a text's writing system says about its language, before any statistics.

Some scripts are written by one language only (kana: Japanese; Hangul: Korean; Thai, Greek, ...):
a text written mainly in one of them is in that language however short it is. Others are shared
(Latin, Cyrillic, Arabic by Arabic/Persian/Urdu, Devanagari by Hindi/Marathi, Han characters by
Chinese and Japanese): there only the words can tell, and short texts cannot. Han is the hard case:
lingua answers Chinese with confidence 1.0 for any text without kana, but a short Japanese text
("美味", "最高") may have no kana at all.
"""

from __future__ import annotations

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
# runs of letters of one script each; `shared` is every other letter (Latin, Cyrillic, Arabic, ...)
_RUNS = regex.compile(
    "|".join(f"(?P<{name}>[{chars}]+)" for name, chars in _OWN.items())
    + "|(?P<shared>[\\p{L}--[" + "".join(_OWN.values()) + "]]+)",
    regex.V1,
)


class Script(NamedTuple):
    """The main script of a text and its length."""

    #: a key of SCRIPT_LANGUAGE, "han" (Han characters, no kana or Hangul), "shared", or None (no letters)
    name: str | None
    #: letters in the main script (for kana and Hangul, with the Han characters beside them)
    letters: int
    #: whitespace-separated words with at least one letter
    words: int


def main_script(text: str) -> Script:
    """The script most of the text's letters are written in."""
    counts: dict[str, int] = {}
    for match in _RUNS.finditer(text):
        counts[match.lastgroup] = counts.get(match.lastgroup, 0) + len(match.group())
    words = sum(1 for word in text.split() if _RUNS.search(word))
    han = counts.pop("han", 0)
    for mixed in ("kana", "hangul"):  # Japanese and Korean write Han characters among their own
        if counts.get(mixed):
            counts[mixed] += han
            han = 0
            break
    if han:
        counts["han"] = han
    if not counts:
        return Script(None, 0, words)
    # ties go to the shared scripts, then by name: the same answer whatever the order of the text
    name = max(counts, key=lambda k: (counts[k], k == "shared", k))
    return Script(name, counts[name], words)
