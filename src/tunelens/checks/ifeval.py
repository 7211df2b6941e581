"""IFEval's verifiable instruction checkers (Zhou et al. 2023), written from the paper's rules.

Each checker is ``f(response, **kwargs) -> bool`` with the kwargs of ``ifeval_input_data.jsonl``.
They follow google-research's ``instructions.py`` semantics (relations "less than" / "at least",
``******`` between two responses, ``***`` between paragraphs, ``<<title>>``, ``*highlight*``, ...),
with the nltk pieces replaced by :mod:`tunelens.checks.text`. Strict scoring applies a checker to
the response as is; loose scoring also tries the standard variants (first line removed, last line
removed, both, and each of those with ``*`` removed) and passes if any variant passes.
"""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Callable

from tunelens.errors import TunelensError
from tunelens.checks.text import count_sentences, count_words

Checker = Callable[..., bool]
RELATIONS = ("less than", "at least")


def _compare(count: int, relation: str | None, target: int) -> bool:
    if relation == "less than":
        return count < target
    if relation in ("at least", None):
        return count >= target
    raise TunelensError(f"unknown relation {relation!r}; expected one of {RELATIONS}")


def _detect_language(text: str) -> str | None:
    import langdetect
    from langdetect import DetectorFactory

    DetectorFactory.seed = 0  # langdetect is randomised; fix it for reproducible scores
    try:
        return langdetect.detect(text)
    except langdetect.LangDetectException:
        return None  # no features (e.g. digits only): the reference implementation passes these


def no_comma(response: str) -> bool:
    return "," not in response


def english_lowercase(response: str) -> bool:
    return response.islower() and _detect_language(response) in ("en", None)


def english_capital(response: str) -> bool:
    return response.isupper() and _detect_language(response) in ("en", None)


def capital_word_frequency(response: str, capital_frequency: int, capital_relation: str) -> bool:
    capitals = [w for w in re.findall(r"\b\w+\b", response) if w.isupper()]
    return _compare(len(capitals), capital_relation, capital_frequency)


def repeat_prompt(response: str, prompt_to_repeat: str) -> bool:
    return response.strip().lower().startswith(prompt_to_repeat.strip().lower())


def two_responses(response: str) -> bool:
    parts = response.split("******")
    valid = []
    for index, part in enumerate(parts):
        if not part.strip():
            if index not in (0, len(parts) - 1):
                return False
        else:
            valid.append(part)
    return len(valid) == 2 and valid[0].strip() != valid[1].strip()


def number_placeholders(response: str, num_placeholders: int) -> bool:
    return len(re.findall(r"\[.*?\]", response)) >= num_placeholders


def postscript(response: str, postscript_marker: str) -> bool:
    marker = postscript_marker.strip()
    if marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + re.escape(marker.lower()) + r".*$"
    return bool(re.findall(pattern, response.lower(), flags=re.MULTILINE))


CONSTRAINED_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


def constrained_response(response: str) -> bool:
    return any(option in response.strip() for option in CONSTRAINED_OPTIONS)


def json_format(response: str) -> bool:
    value = response.strip()
    value = re.sub(r"^```(json|Json|JSON)?\s*", "", value)
    value = re.sub(r"\s*```$", "", value).strip()
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


def multiple_sections(response: str, num_sections: int, section_spliter: str) -> bool:
    pattern = r"\s?" + re.escape(section_spliter.strip()) + r"\s?\d+\s?"
    return len(re.split(pattern, response)) - 1 >= num_sections


def number_bullet_lists(response: str, num_bullets: int) -> bool:
    stars = re.findall(r"^\s*\*[^\*].*$", response, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", response, flags=re.MULTILINE)
    return len(stars) + len(dashes) == num_bullets


def number_highlighted_sections(response: str, num_highlights: int) -> bool:
    count = sum(1 for h in re.findall(r"\*[^\n\*]*\*", response) if h.strip("*").strip())
    count += sum(1 for h in re.findall(r"\*\*[^\n\*]*\*\*", response) if h.removeprefix("**").removesuffix("**").strip())
    return count >= num_highlights


def title(response: str) -> bool:
    return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", response))


def keyword_existence(response: str, keywords: list[str]) -> bool:
    return all(re.search(re.escape(k), response, flags=re.IGNORECASE) for k in keywords)


def forbidden_words(response: str, forbidden_words: list[str]) -> bool:
    return not any(re.search(r"\b" + re.escape(w) + r"\b", response, flags=re.IGNORECASE) for w in forbidden_words)


def keyword_frequency(response: str, keyword: str, frequency: int, relation: str) -> bool:
    return _compare(len(re.findall(re.escape(keyword), response, flags=re.IGNORECASE)), relation, frequency)


def letter_frequency(response: str, letter: str, let_frequency: int, let_relation: str) -> bool:
    counts = collections.Counter(response.lower())
    return _compare(counts[letter.lower()], let_relation, let_frequency)


def response_language(response: str, language: str) -> bool:
    detected = _detect_language(response)
    return detected is None or detected == language


def nth_paragraph_first_word(response: str, num_paragraphs: int, nth_paragraph: int, first_word: str) -> bool:
    paragraphs = re.split(r"\n\n", response)
    count = sum(1 for p in paragraphs if p.strip())
    if nth_paragraph > count or count != num_paragraphs:
        return False
    non_empty = [p for p in paragraphs if p.strip()]
    words = non_empty[nth_paragraph - 1].strip().split()
    if not words:
        return False
    word = words[0].strip().lstrip("'\"")
    first = ""
    for ch in word:
        if ch in ".,?!'\"":
            break
        first += ch.lower()
    return first == first_word.lower()


def number_paragraphs(response: str, num_paragraphs: int) -> bool:
    paragraphs = re.split(r"\s?\*\*\*\s?", response)
    count = len(paragraphs)
    for index, paragraph in enumerate(paragraphs):
        if not paragraph.strip():
            if index in (0, len(paragraphs) - 1):
                count -= 1
            else:
                return False
    return count == num_paragraphs


def number_sentences(response: str, num_sentences: int, relation: str) -> bool:
    return _compare(count_sentences(response), relation, num_sentences)


def number_words(response: str, num_words: int, relation: str) -> bool:
    return _compare(count_words(response), relation, num_words)


def end_checker(response: str, end_phrase: str) -> bool:
    return response.strip().strip('"').lower().endswith(end_phrase.strip().lower())


def quotation(response: str) -> bool:
    value = response.strip()
    return len(value) > 1 and value[0] == '"' and value[-1] == '"'


CHECKERS: dict[str, Checker] = {
    "change_case:capital_word_frequency": capital_word_frequency,
    "change_case:english_capital": english_capital,
    "change_case:english_lowercase": english_lowercase,
    "combination:repeat_prompt": repeat_prompt,
    "combination:two_responses": two_responses,
    "detectable_content:number_placeholders": number_placeholders,
    "detectable_content:postscript": postscript,
    "detectable_format:constrained_response": constrained_response,
    "detectable_format:json_format": json_format,
    "detectable_format:multiple_sections": multiple_sections,
    "detectable_format:number_bullet_lists": number_bullet_lists,
    "detectable_format:number_highlighted_sections": number_highlighted_sections,
    "detectable_format:title": title,
    "keywords:existence": keyword_existence,
    "keywords:forbidden_words": forbidden_words,
    "keywords:frequency": keyword_frequency,
    "keywords:letter_frequency": letter_frequency,
    "language:response_language": response_language,
    "length_constraints:nth_paragraph_first_word": nth_paragraph_first_word,
    "length_constraints:number_paragraphs": number_paragraphs,
    "length_constraints:number_sentences": number_sentences,
    "length_constraints:number_words": number_words,
    "punctuation:no_comma": no_comma,
    "startend:end_checker": end_checker,
    "startend:quotation": quotation,
}


def check(instruction_id: str, response: str, kwargs: dict | None) -> bool:
    """Strict: does ``response`` follow the instruction? Empty responses never do."""
    checker = CHECKERS.get(instruction_id)
    if checker is None:
        raise TunelensError(f"unknown IFEval instruction id {instruction_id!r}; known: {', '.join(sorted(CHECKERS))}")
    args = {k: v for k, v in (kwargs or {}).items() if v is not None}
    try:
        return bool(response.strip()) and checker(response, **args)
    except TypeError as exc:
        raise TunelensError(f"IFEval instruction {instruction_id!r}: bad kwargs {args}: {exc}") from exc


def loose_variants(response: str) -> list[str]:
    """The response plus the standard loose variants (first/last line dropped, asterisks removed)."""
    lines = response.split("\n")
    base = [response, "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return base + [v.replace("*", "") for v in base]


def check_loose(instruction_id: str, response: str, kwargs: dict | None) -> bool:
    return any(check(instruction_id, variant, kwargs) for variant in loose_variants(response))


def score_item(row: dict, response: str) -> dict[str, list[float] | float]:
    """Per-prompt and per-instruction strict/loose results for one IFEval row."""
    ids, kwargs_list = row["instruction_id_list"], row.get("kwargs") or [{}] * len(row["instruction_id_list"])
    strict = [float(check(i, response, k)) for i, k in zip(ids, kwargs_list)]
    loose = [float(check_loose(i, response, k)) for i, k in zip(ids, kwargs_list)]
    return {
        "prompt_level_strict_acc": float(all(strict)),
        "inst_level_strict_acc": strict,
        "prompt_level_loose_acc": float(all(loose)),
        "inst_level_loose_acc": loose,
    }


def validate_row(row: dict, where: str) -> None:
    for key in ("key", "prompt", "instruction_id_list"):
        if key not in row:
            raise TunelensError(f"{where}: IFEval row has no {key!r} field")
    unknown = [i for i in row["instruction_id_list"] if i not in CHECKERS]
    if unknown:
        raise TunelensError(f"{where}: unknown IFEval instruction id(s) {unknown}")
