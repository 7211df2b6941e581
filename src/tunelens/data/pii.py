"""PII redaction with typed placeholders.

``redact(text) -> (redacted_text, counts_by_type)``. Detected types and placeholders:
``[SECRET]`` (API keys, tunelens's own ``tl_...`` serve keys included, tokens, private keys), ``[EMAIL]``, ``[IBAN]`` (mod-97 checked),
``[CREDIT_CARD]`` (Luhn checked), ``[SSN]`` (US, dashed), ``[IP]`` (IPv4, and IPv6 checked with :mod:`ipaddress` and
at least two hex digits, so '::1' and C++ 'a::b'-like tokens are not flagged), ``[PHONE]`` (international ``+`` numbers and North-American formats).
Secrets run first so a key containing digits is not half-eaten by the phone pattern; cards and
IBANs run before phones for the same reason. The serve stage's guardrails reuse this function.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable

PII_TYPES = ("SECRET", "EMAIL", "IBAN", "CREDIT_CARD", "SSN", "IP", "PHONE")

_SECRET = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"
    r"|\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"
    r"|\bgh[pousr]_[A-Za-z0-9]{36,}\b|\bgithub_pat_[A-Za-z0-9_]{22,}"
    r"|\bAKIA[0-9A-Z]{16}\b|\bAIza[0-9A-Za-z_-]{35}"
    r"|\bxox[abposr]-[A-Za-z0-9-]{10,}|\bhf_[A-Za-z0-9]{30,}\b"
    r"|\bglpat-[A-Za-z0-9_-]{20,}|\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    # tunelens serve API keys: tl_<hex id>_<urlsafe secret> (tunelens.serve.keys)
    r"|\btl_[0-9a-f]{6,32}_[A-Za-z0-9_-]{16,}"
)
# key = value assignments: only the value is replaced.
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)(\b(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|password|passwd|bearer)"
    r"[\"']?\s*(?:[:=]|\s)\s*[\"']?)([A-Za-z0-9_\-./+=]{16,})"
)
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
# Card numbers start with 2-6 (Mastercard 2/5, Amex/Diners/JCB 3, Visa 4, Discover 6); digits
# glued to a decimal point, a word or an '@' (decimals, binary numbers, ids in URLs) are not cards.
_CARD = re.compile(
    r"(?<![\w.,@/-])(?:[2-6]\d{3}([ -])\d{4}\1\d{4}\1\d{4}(?:\1\d{1,3})?|3[47]\d{2}([ -])\d{6}\2\d{5}|[2-6]\d{12,18})"
    r"(?![\d@]|[.,]\d)"
)
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_IPV4 = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\.?\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:])")
_PHONE = re.compile(
    r"(?<![\w+])\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}(?!\d)"
    r"|(?<![\w(])(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}(?!\d)"
)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    s = candidate.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _card_ok(match: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", match.group(0))
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _ipv6_ok(match: re.Match[str]) -> bool:
    s = match.group(0)
    if s.count(":") < 2 or sum(c.isalnum() for c in s) < 2:
        return False
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return True


def _phone_ok(match: re.Match[str]) -> bool:
    return 7 <= sum(c.isdigit() for c in match.group(0)) <= 15


# Cheap gates: a rule's regex only runs on texts that pass its gate (most texts pass none), which
# keeps redaction of 52k Alpaca records around a second instead of a dozen.
_SECRET_PREFIXES = ("-----BEGIN", "sk-", "gho_", "ghp_", "ghu_", "ghs_", "ghr_", "github_pat_", "AKIA", "AIza",
                    "xox", "hf_", "glpat-", "_live_", "_test_", "eyJ", "tl_")
_SECRET_WORDS = ("key", "secret", "token", "passw", "bearer")
_DIGITS3 = re.compile(r"\d{3}")
_DOTTED = re.compile(r"\d\.\d")
_HEXCOLON = re.compile(r"[0-9A-Fa-f]:|:[0-9A-Fa-f]")
_IBAN_HEAD = re.compile(r"[A-Z]{2}\d{2}")


_GATES: dict[str, Callable[[str], bool]] = {
    "secret": lambda t: any(p in t for p in _SECRET_PREFIXES),
    "secret_word": lambda t: any(w in t.lower() for w in _SECRET_WORDS),
    "@": lambda t: "@" in t,
    "iban": lambda t: _IBAN_HEAD.search(t) is not None,
    "digits3": lambda t: _DIGITS3.search(t) is not None,
    "dotted": lambda t: _DOTTED.search(t) is not None,
    "hexcolon": lambda t: ":" in t and _HEXCOLON.search(t) is not None,
}


# (type, pattern, validity check, gate)
_Rule = tuple[str, re.Pattern[str], Callable[[re.Match[str]], bool] | None, str]
_RULES: list[_Rule] = [
    ("SECRET", _SECRET, None, "secret"),
    ("SECRET", _SECRET_ASSIGNMENT, None, "secret_word"),
    ("EMAIL", _EMAIL, None, "@"),
    ("IBAN", _IBAN, lambda m: iban_ok(m.group(0)), "iban"),
    ("CREDIT_CARD", _CARD, _card_ok, "digits3"),
    ("SSN", _SSN, None, "digits3"),
    ("IP", _IPV6, _ipv6_ok, "hexcolon"),  # before IPv4, so '::ffff:1.2.3.4' goes whole
    ("IP", _IPV4, None, "dotted"),
    ("PHONE", _PHONE, _phone_ok, "digits3"),
]


def redact(text: str, types: Iterable[str] | None = None) -> tuple[str, dict[str, int]]:
    """Replace detected PII by ``[TYPE]`` placeholders; return the text and counts by type.

    ``types`` restricts detection to a subset of :data:`PII_TYPES` (default: all).
    """
    wanted = set(PII_TYPES if types is None else types)
    unknown = wanted - set(PII_TYPES)
    if unknown:
        raise ValueError(f"unknown PII type(s) {sorted(unknown)}; known: {list(PII_TYPES)}")
    counts: dict[str, int] = {}
    passed: dict[str, bool] = {}  # gate results, reset when a placeholder changes the text
    for kind, pattern, check, gate in _RULES:
        if kind not in wanted:
            continue
        if gate not in passed:
            passed[gate] = _GATES[gate](text)
        if passed[gate]:
            before = len(counts)
            text = _sub(kind, pattern, check, text, counts)
            if len(counts) != before or kind in counts:
                passed = {}
    return text, counts


def _sub(kind: str, pattern: re.Pattern[str], check, text: str, counts: dict[str, int]) -> str:
    placeholder = f"[{kind}]"

    def replace(match: re.Match[str]) -> str:
        if check is not None and not check(match):
            return match.group(0)
        counts[kind] = counts.get(kind, 0) + 1
        if pattern is _SECRET_ASSIGNMENT:
            return match.group(1) + placeholder
        return placeholder

    return pattern.sub(replace, text)


def _gate_hits(joined: str, gate: str) -> list[int]:
    """Start positions in ``joined`` where ``gate`` could fire (literal finds and tiny regexes, C speed)."""
    def finds(haystack: str, needles) -> list[int]:
        out = []
        for needle in needles:
            pos = haystack.find(needle)
            while pos >= 0:
                out.append(pos)
                pos = haystack.find(needle, pos + 1)
        return out

    if gate == "secret":
        return finds(joined, _SECRET_PREFIXES)
    if gate == "secret_word":
        return finds(joined.lower(), _SECRET_WORDS)
    if gate == "@":
        return finds(joined, "@")
    regex = {"iban": _IBAN_HEAD, "digits3": _DIGITS3, "dotted": _DOTTED, "hexcolon": _HEXCOLON}[gate]
    return [m.start() for m in regex.finditer(joined)]


def redact_many(texts: list[str], types: Iterable[str] | None = None) -> list[tuple[str, dict[str, int]]]:
    """:func:`redact` over many texts: the gates scan all texts joined at once, and the full
    patterns run only on the few texts that pass a gate. Same results as calling redact on each."""
    import bisect

    wanted = set(PII_TYPES if types is None else types)
    gates = {gate for kind, _, _, gate in _RULES if kind in wanted}
    joined = "\x00".join(texts)
    starts, pos = [], 0
    for t in texts:
        starts.append(pos)
        pos += len(t) + 1
    flagged: set[int] = set()
    for gate in gates:
        flagged.update(bisect.bisect_right(starts, p) - 1 for p in _gate_hits(joined, gate))
    out: list[tuple[str, dict[str, int]]] = [(t, {}) for t in texts]
    for i in flagged:
        out[i] = redact(texts[i], wanted)
    return out
