"""Small text utilities with no external data: sentence splitting and word counting.

IFEval's reference code uses nltk's punkt model, whose data cannot be downloaded here. The
splitter below follows the same rules for ordinary prose: a sentence ends at ``.``, ``!`` or
``?`` (possibly repeated, possibly followed by closing quotes/brackets) when whitespace follows,
except after common abbreviations ("Mr.", "e.g.", "U.S.") and initials, and never inside
numbers ("3.14"). A blank line also ends a sentence, so list items and headings without final
punctuation count as sentences of their own.
"""

from __future__ import annotations

import re

ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "cf", "al", "approx",
    "inc", "ltd", "co", "corp", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct",
    "nov", "dec", "no", "fig", "vol", "p", "pp", "u.s", "u.k", "a.m", "p.m", "ph.d", "mt", "gen", "col",
}

_BOUNDARY = re.compile(r"([.!?]+)([\"'”’)\]]*)(\s+)")
_WORD = re.compile(r"\w+")


def _ends_with_abbreviation(text: str) -> bool:
    match = re.search(r"(\S+)\.$", text)
    if not match:
        return False
    token = match.group(1).lower().lstrip("(\"'")
    return token in ABBREVIATIONS or (len(token) == 1 and token.isalpha())


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences (see the module docstring for the rules)."""
    sentences: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        start = 0
        for match in _BOUNDARY.finditer(block):
            end = match.end(2)
            candidate = block[start:end]
            if match.group(1) == "." and _ends_with_abbreviation(candidate):
                continue
            if candidate.strip():
                sentences.append(candidate.strip())
            start = match.end()
        rest = block[start:].strip()
        if rest:
            sentences.append(rest)
    return sentences


def count_sentences(text: str) -> int:
    return len(split_sentences(text))


def count_words(text: str) -> int:
    """Words as nltk's ``RegexpTokenizer(r"\\w+")`` counts them (IFEval's definition)."""
    return len(_WORD.findall(text))
