"""PII and secret detection with typed placeholders: the one redactor of tunelens.

``find_pii(text) -> [Entity(type, start, end)]`` (spans in ``text``, sorted, not overlapping),
``redact(text) -> (redacted_text, counts_by_type)``, ``redact_spans(text) -> (redacted_text,
entities)`` and ``redact_many(texts)``. A detected value becomes ``[TYPE]``. Types:

``SECRET``
    API keys and tokens by their shape (OpenAI-style ``sk-…``, GitHub ``ghp_``/``github_pat_``,
    Slack ``xox[abposr]-``, AWS key ids ``AKIA…``/``ASIA…``, Google ``AIza…``, Hugging Face ``hf_``,
    GitLab, Stripe, JWTs, PEM private-key blocks, JSON-escaped ones included, tunelens's own serve
    keys) and the value of a ``name = value`` assignment whose name says secret (``password``,
    ``api_key``, ``aws_secret_access_key``, Azure ``AccountKey=``/``SharedAccessKey=``, SAS
    ``sig=``, ``Bearer …``); only the value is replaced and it must hold a digit or ``/+=``.
``EMAIL``, ``IBAN`` (mod-97 checked, the longest valid prefix), ``CREDIT_CARD`` (Luhn checked)
``SSN``
    US, dashed ``123-45-6789`` anywhere; spaced or undashed only after the words SSN / social
    security within the preceding 40 characters.
``IP``
    IPv4, and IPv6 checked with :mod:`ipaddress`; a dotted quad after "version", "section",
    "clause", "release", "firmware"... or glued to a ``v`` is a version or section number, not an IP.
``PHONE``
    international ``+`` numbers (E.164 with or without spaces, ``(0)`` trunk marks), North
    American ``(415) 555-0123``/``415.555.0123``/``1-800-…``, national numbers with a leading trunk
    ``0`` and 10–11 digits (UK, DE, FR, IT, IN landlines and mobiles), and the formats without a
    trunk prefix (ES ``612 345 678``, IN ``98765 43210``, bare 10 digits) only after a phone word
    (call, tel, mobile, móvil, portable, Handy, WhatsApp, ...) within the preceding 40 characters,
    and never after order/invoice/ISBN/tracking words.
``ADDRESS``
    street addresses: US/UK ``number + name + suffix`` (``221B Baker Street``, ``350 Fifth Ave``,
    ``123 Main St., Apt 4B``), German ``…straße 5`` / ``Berliner Str. 12``, French ``12 rue de
    Rivoli``, Spanish ``Calle Mayor 10``, Italian ``Via Roma 12``. Town and postcode are kept.
``PERSON`` (not in :data:`DEFAULT_TYPES`: ask for it)
    a courtesy title followed by a capitalised name (``Dr. Wei Chen``), or a given name from the
    shipped list (``pii_given_names.txt``, ~280 names, words that are also common English words
    left out) followed by a capitalised surname. No model, no download. It is off by default
    because it misses names outside the list and because instruction data is full of names that
    are content, not personal data (historical figures, characters, the suite's synthetic people).

Rules run in order (secrets first, so a key holding digits is not half-eaten by the phone pattern;
cards and IBANs before phones); a value found by one rule is masked before the next rule runs.
Floor: ``safety`` (standard library only). The curation step (``tunelens.data.pii``) and the
server's guardrails use this module.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PII_TYPES = ("SECRET", "EMAIL", "IBAN", "CREDIT_CARD", "SSN", "IP", "PHONE", "ADDRESS", "PERSON")
DEFAULT_TYPES = tuple(t for t in PII_TYPES if t != "PERSON")
NAMES_FILE = Path(__file__).resolve().parent / "pii_given_names.txt"
_MASK = "\x00"


@dataclass(frozen=True)
class Entity:
    type: str
    start: int
    end: int

    def to_dict(self) -> dict[str, int | str]:
        return {"type": self.type, "start": self.start, "end": self.end}


# ------------------------------------------------------------------ secrets
_SECRET = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----(?:\\n|\n)?"
    r"|\bsk-(?:proj-|ant-|svcacct-)?[A-Za-z0-9_-]{20,}"
    r"|\bgh[pousr]_[A-Za-z0-9]{36,}\b|\bgithub_pat_[A-Za-z0-9_]{22,}"
    r"|\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b|\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"
    r"|\bxox[abposr]-[A-Za-z0-9-]{10,}|\bhf_[A-Za-z0-9]{30,}\b"
    r"|\bglpat-[A-Za-z0-9_-]{20,}|\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    # tunelens serve API keys: tl_<hex id>_<urlsafe secret> (tunelens.serve.keys)
    r"|\btl_[0-9a-f]{6,32}_[A-Za-z0-9_-]{16,}"
)
# name = value assignments (env files, INI, JSON, connection strings): only the value (group 2) goes.
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)((?<![A-Za-z0-9])(?:[A-Za-z0-9]+[_.-])*"
    r"(?:api[_-]?key|apikey|secret(?:[_-]?access)?(?:[_-]?key)?|client[_-]?secret|access[_-]?key(?:[_-]?id)?"
    r"|access[_-]?token|auth[_-]?token|refresh[_-]?token|token|password|passwd|pwd|bearer"
    r"|account[_-]?key|shared[_-]?access[_-]?key|private[_-]?key|sig)"
    r"[\"']?(?:\s*[:=]\s*|\s+)[\"']?)([A-Za-z0-9_\-./+=~!@#$%^&*]{16,})"
)

# ------------------------------------------------------------------ contact and money
_EMAIL = re.compile(r"(?<![\w.+'-])[A-Za-z0-9][A-Za-z0-9._%+'-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
# Card numbers start with 2-6 (Mastercard 2/5, Amex/Diners/JCB 3, Visa 4, Discover 6); digits
# glued to a decimal point, a word or an '@' (decimals, binary numbers, ids in URLs) are not cards.
_CARD = re.compile(
    r"(?<![\w.,@/-])(?:[2-6]\d{3}([ -])\d{4}\1\d{4}\1\d{4}(?:\1\d{1,3})?|3[47]\d{2}([ -])\d{6}\2\d{5}|3[068]\d{2}([ -])\d{6}\3\d{4}|[2-6]\d{12,18})"
    r"(?![\d@]|[.,]\d)"
)
_SSN_DASHED = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_SSN_LOOSE = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}( ?)(?!00)\d{2}\1(?!0000)\d{4}(?![\w-])")
_SSN_CONTEXT = re.compile(r"(?i)\b(?:ssn|ss#|social[ -]security|soc\.? ?sec)")

# ------------------------------------------------------------------ network
_IPV4 = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\.?\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:])")
_VERSION_CONTEXT = re.compile(
    r"(?i)(?:\b(?:version|ver|release|rel|build|section|sect|sec|clause|chapter|ch|paragraph|para|article|art"
    r"|firmware|sdk|patch|rule|step|item|figure|fig|table|appendix)\.?[\s:#]*|§\s*|\bv\s?)$"
)

# ------------------------------------------------------------------ phones
_PHONE_INTL = re.compile(
    r"(?<![\w+])\+\d{1,3}(?:[ .\-/]?(?:\(0\)|\(\d{1,4}\)|\d{1,5})){1,7}(?!\w|[.,]\d)"
)
_PHONE_NANP = re.compile(
    r"(?<![\w(+.-])(?:1[ .-])?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w-]|[.,]\d)"
)
_PHONE_TRUNK = re.compile(  # national numbers with a trunk 0: 020 7946 0958, 030 12345678, 06 12 34 56 78
    r"(?<![\w.+/,:-])0[1-9]\d{0,4}(?:[ ./-]?\d{2,8}){1,4}(?![\w-]|[.,/:]\d)"
)
_PHONE_LOOSE = re.compile(  # no trunk prefix: needs a phone word before it
    r"(?<![\w.+/,:-])(?:[6-9]\d{2} ?\d{3} ?\d{3}|[89]\d [1-9]\d{2} \d{2} \d{2}|[6-9]\d{4}[ -]?\d{5}|[2-9]\d{9})"
    r"(?![\w-]|[.,/:]\d)"
)
_PHONE_WORDS = re.compile(
    r"(?i)(?:phone|tel\b|tel\.|telephone|t[eé]l[eé]fono|t[ée]l[ée]phone|call|ring|dial|mobile|mob\b|cell|handy|"
    r"m[oó]vil|cellulare|portable|numero|número|numéro|nummer|whats ?app|sms|text me|fax|contact|reach|"
    r"helpline|hotline|landline|mobile no|ph\.|llámanos|llama|chiama|appel)"
)
_NOT_PHONE_WORDS = re.compile(
    r"(?i)(?:order|invoice|isbn|issn|tracking|ticket|serial|sku|ean|upc|account|acct|ref|reference|"
    r"id\b|no\. of|case|claim|policy|batch|lot|part|model|patent|receipt|transaction|confirmation|booking ref)"
)

# ------------------------------------------------------------------ addresses
_US_SUFFIX = (r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Terrace|Way|"
              r"Gardens|Close|Crescent|Square|Sq|Parkway|Pkwy|Highway|Hwy|Circle|Cir|Loop|Row|Mews|Grove|Hill|"
              r"Walk|Alley|Trail|Plaza")
_ADDRESS_EN = re.compile(
    r"(?<![\w.,/$€£-])\d{1,5}[A-Za-z]?(?:-\d{1,5})?"
    r"(?: (?:[NSEW]\.?|North|South|East|West|Mt\.?|St\.?|\d{1,3}(?:st|nd|rd|th)|[A-Z][a-z]+(?:-[A-Z][a-z]+)?(?:['’]s)?)){1,4}"
    rf" (?:{_US_SUFFIX})\b\.?(?: (?:NW|NE|SW|SE|N|S|E|W)\b)?"
    r"(?:,? (?:Apt|Apartment|Suite|Ste|Unit|Flat|Fl|Floor|#)\.? ?#?[\w-]{1,6})?"
)
_ADDRESS_DE = re.compile(
    r"\b(?:[A-ZÄÖÜ][a-zäöüß]+(?:-[A-ZÄÖÜ][a-zäöüß]+)*(?:straße|strasse|str\.|weg|allee|platz|gasse|damm|ufer|chaussee)"
    r"|[A-ZÄÖÜ][a-zäöüß]+(?:er|sche|sches) (?:Straße|Strasse|Str\.|Weg|Allee|Platz|Gasse|Ring|Damm)"
    r"|(?:Am|An der|Auf dem|Im|In der|Unter den) [A-ZÄÖÜ][a-zäöüß]+)"
    r" \d{1,4}(?: ?[a-z])?\b"
)
_ADDRESS_FR = re.compile(
    r"(?<![\w.,/-])\d{1,4}(?: ?(?:bis|ter))?,? (?i:rue|avenue|av\.|boulevard|bd|place|allée|impasse|chemin|quai|cours|route|square)"
    r"(?: (?:de la|de l'|des|du|de|d'|la|le|les|l')?\s?[A-ZÉÈÀ][\w'’-]+){1,4}"
)
_ADDRESS_ES_IT = re.compile(
    r"\b(?:Calle|C/|Avenida|Avda\.|Paseo|Plaza|Camino|Carrera|Ronda|Travesía|Via|Viale|Corso|Piazza|Piazzale|Largo|Vicolo)"
    r"(?: (?:de la|de los|de las|del|de|la|el|della|delle|dei|degli|di|San|Santa|Sant')?\s?[A-ZÁÉÍÓÚÑ][\w'’-]+){1,4}"
    r",? (?:n[º°o]\.? ?)?\d{1,4}(?: ?[A-Za-z])?\b"
)

# ------------------------------------------------------------------ people
_UPPER = "A-ZÀ-ÖØ-Þ"
_LOWER = "a-zß-öø-ÿ"
_SURNAME = rf"(?:Mc|Mac|O'|D'|De|Di|Van |Von |van |von |de |di |da )?[{_UPPER}][{_LOWER}'’]+(?:-[{_UPPER}][{_LOWER}]+)?"
_TITLE_NAME = re.compile(rf"(?<![\w-])(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame)\.? {_SURNAME}(?: {_SURNAME}){{0,2}}")
_NOT_SURNAME = frozenset(
    "Street St Avenue Ave Road Rd Lane Drive Way Place Square Station Park River Bridge University College "
    "School Hospital Church Inc Ltd Corp Company Group Foundation Institute Museum Centre Center Hotel Airport "
    "Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June July August "
    "September October November December The And Or But If When Is Are Was Were Has Have Will Would Can Could "
    "Should I You He She We They It This That Please Thanks Hello Hi Dear Im Am Cathedral".split()
)


@lru_cache(maxsize=1)
def _given_names() -> frozenset[str]:
    lines = NAMES_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


@lru_cache(maxsize=1)
def _given_name_pattern() -> re.Pattern[str]:
    names = sorted(_given_names(), key=len, reverse=True)
    alternation = "|".join(re.escape(n) for n in names)
    return re.compile(rf"(?<![\w'-])(?:{alternation})(?: {_SURNAME}){{1,2}}(?![\w'-])")


# ------------------------------------------------------------------ checks
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
    if not 15 <= len(s) <= 34 or not s[:2].isalpha() or not s[2:4].isdigit():
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


Span = tuple[int, int]
Check = Callable[[re.Match[str], str], Span | None]


def _whole(match: re.Match[str], text: str) -> Span:
    return match.span()


def _iban_span(match: re.Match[str], text: str) -> Span | None:
    s = match.group(0)
    for end in range(len(s), 14, -1):  # the longest prefix that passes mod-97 (a capitalised word may follow)
        if s[end - 1] != " " and iban_ok(s[:end]):
            return match.start(), match.start() + end
    return None


def _card_span(match: re.Match[str], text: str) -> Span | None:
    digits = re.sub(r"\D", "", match.group(0))
    return match.span() if 13 <= len(digits) <= 19 and luhn_ok(digits) else None


def _before(text: str, start: int, width: int = 40) -> str:
    return text[max(0, start - width):start].replace(_MASK, " ")


def _ssn_loose_span(match: re.Match[str], text: str) -> Span | None:
    return match.span() if _SSN_CONTEXT.search(_before(text, match.start())) else None


def _ipv4_span(match: re.Match[str], text: str) -> Span | None:
    if match.group(0).startswith("0."):  # 0.0.0.0 and "this network": not a host's address
        return None
    if _VERSION_CONTEXT.search(_before(text, match.start(), 30)):
        return None
    return match.span()


def _ipv6_span(match: re.Match[str], text: str) -> Span | None:
    s = match.group(0)
    if s.count(":") < 2 or sum(c.isalnum() for c in s) < 2:
        return None
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return None
    return match.span()


def _digits(s: str) -> int:
    return sum(c.isdigit() for c in s)


def _phone_intl_span(match: re.Match[str], text: str) -> Span | None:
    n = _digits(match.group(0).replace("(0)", ""))
    return match.span() if 8 <= n <= 15 else None


def _phone_nanp_span(match: re.Match[str], text: str) -> Span | None:
    if _NOT_PHONE_WORDS.search(_before(text, match.start(), 25)):
        return None
    return match.span()


def _phone_trunk_span(match: re.Match[str], text: str) -> Span | None:
    s = match.group(0)
    if not 10 <= _digits(s) <= 12 or _NOT_PHONE_WORDS.search(_before(text, match.start(), 25)):
        return None
    if re.fullmatch(r"\d{1,2}([./-])\d{1,2}\1\d{2,4}", s):  # a date
        return None
    if set(re.sub(r"\D", "", s)) <= {"0", "1"}:  # a binary number
        return None
    return match.span()


def _phone_loose_span(match: re.Match[str], text: str) -> Span | None:
    before = _before(text, match.start())
    if not _PHONE_WORDS.search(before) or _NOT_PHONE_WORDS.search(_before(text, match.start(), 25)):
        return None
    return match.span()


_YEAR_BEFORE = re.compile(r"(?i)\b(?:a|an|the|in|since|of|by|from|until|till|during|before|after|circa|c\.)\s+$")


def _address_en_span(match: re.Match[str], text: str) -> Span | None:
    number = re.match(r"\d+", match.group(0))
    if number and 1800 <= int(number.group(0)) <= 2099 and _YEAR_BEFORE.search(_before(text, match.start(), 12)):
        return None  # "a 2016 Supreme Court case", "in 1999 Oxford Street ..." is a year
    return match.span()


def _assignment_span(match: re.Match[str], text: str) -> Span | None:
    value = match.group(2)
    if not any(c.isdigit() or c in "/+=" for c in value):
        return None
    return match.span(2)


def _person_span(match: re.Match[str], text: str) -> Span | None:
    words = match.group(0).split(" ")
    # a word that is not a surname (a street, a weekday, a capitalised function word) ends the name
    for i, word in enumerate(words[1:], start=1):
        if word.rstrip(".") in _NOT_SURNAME:
            words = words[:i]
            break
    if len(words) < 2:
        return None
    return match.start(), match.start() + len(" ".join(words))


# ------------------------------------------------------------------ gates
# A rule's regex only runs on texts that pass its gate (most texts pass none), which keeps
# redaction of 52k Alpaca records around a second.
_SECRET_PREFIXES = ("-----BEGIN", "sk-", "gho_", "ghp_", "ghu_", "ghs_", "ghr_", "github_pat_", "AKIA", "ASIA",
                    "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA", "AIza", "xox", "hf_", "glpat-", "_live_",
                    "_test_", "eyJ", "tl_")
_SECRET_WORDS = ("key", "secret", "token", "passw", "pwd", "bearer", "sig=")
_DIGITS7 = re.compile(r"\d(?:[^\d\x00]{0,3}\d){6}")  # \x00 joins texts in redact_many: never cross it
_DIGITS9 = re.compile(r"\d(?:[^\d\x00]{0,2}\d){8}")
_DOTTED = re.compile(r"\d\.\d")
_HEXCOLON = re.compile(r"[0-9A-Fa-f]:|:[0-9A-Fa-f]")
_IBAN_HEAD = re.compile(r"[A-Z]{2}\d{2}")
# a number then a capitalised or French street word (US/UK, FR); a capitalised word then a number (DE, ES, IT)
_ADDRESS_NUM_GATE = re.compile(r"\d[A-Za-z]?,? (?:[A-Z]|(?i:rue|av|avenue|bd|boulevard|place|allée|impasse|chemin|quai|cours|route|square)\b)")
_ADDRESS_NAME_GATE = re.compile(r"[A-ZÀ-Þ][a-zß-ÿ'’-]+\.?,? \d")
_PERSON_GATE = re.compile(rf"[{_UPPER}][{_LOWER}]+\.? [{_UPPER}]")

_GATES: dict[str, re.Pattern[str] | tuple[str, ...]] = {
    "secret": _SECRET_PREFIXES,
    "secret_word": _SECRET_WORDS,
    "@": ("@",),
    "iban": _IBAN_HEAD,
    "digits7": _DIGITS7,
    "digits9": _DIGITS9,
    "dotted": _DOTTED,
    "hexcolon": _HEXCOLON,
    "address_num": _ADDRESS_NUM_GATE,
    "address_name": _ADDRESS_NAME_GATE,
    "person": _PERSON_GATE,
}
_LOWERCASE_GATES = {"secret_word"}


def _gate_passes(gate: str, text: str) -> bool:
    g = _GATES[gate]
    if isinstance(g, tuple):
        haystack = text.lower() if gate in _LOWERCASE_GATES else text
        return any(needle in haystack for needle in g)
    return g.search(text) is not None


# (type, pattern, span check, gate), in priority order
_Rule = tuple[str, Callable[[], re.Pattern[str]], Check, str]
_RULES: list[_Rule] = [
    ("SECRET", lambda: _SECRET, _whole, "secret"),
    ("SECRET", lambda: _SECRET_ASSIGNMENT, _assignment_span, "secret_word"),
    ("EMAIL", lambda: _EMAIL, _whole, "@"),
    ("IBAN", lambda: _IBAN, _iban_span, "iban"),
    ("CREDIT_CARD", lambda: _CARD, _card_span, "digits7"),
    ("SSN", lambda: _SSN_DASHED, _whole, "digits9"),
    ("SSN", lambda: _SSN_LOOSE, _ssn_loose_span, "digits9"),
    ("IP", lambda: _IPV6, _ipv6_span, "hexcolon"),  # before IPv4, so '::ffff:1.2.3.4' goes whole
    ("IP", lambda: _IPV4, _ipv4_span, "dotted"),
    ("PHONE", lambda: _PHONE_INTL, _phone_intl_span, "digits7"),
    ("PHONE", lambda: _PHONE_NANP, _phone_nanp_span, "digits7"),
    ("PHONE", lambda: _PHONE_TRUNK, _phone_trunk_span, "digits7"),
    ("PHONE", lambda: _PHONE_LOOSE, _phone_loose_span, "digits7"),
    ("ADDRESS", lambda: _ADDRESS_EN, _address_en_span, "address_num"),
    ("ADDRESS", lambda: _ADDRESS_DE, _whole, "address_name"),
    ("ADDRESS", lambda: _ADDRESS_FR, _whole, "address_num"),
    ("ADDRESS", lambda: _ADDRESS_ES_IT, _whole, "address_name"),
    ("PERSON", lambda: _TITLE_NAME, _person_span, "person"),
    ("PERSON", _given_name_pattern, _person_span, "person"),
]


def _wanted(types: Iterable[str] | None) -> set[str]:
    wanted = set(DEFAULT_TYPES if types is None else types)
    unknown = wanted - set(PII_TYPES)
    if unknown:
        raise ValueError(f"unknown PII type(s) {sorted(unknown)}; known: {list(PII_TYPES)}")
    return wanted


def find_pii(text: str, types: Iterable[str] | None = None) -> list[Entity]:
    """The PII values in ``text``: sorted, non-overlapping spans of the ``types`` asked for
    (default :data:`DEFAULT_TYPES`, every type but PERSON)."""
    wanted = _wanted(types)
    work = text
    found: list[Entity] = []
    gates: dict[str, bool] = {}
    for kind, pattern, check, gate in _RULES:
        if kind not in wanted:
            continue
        if gate not in gates:
            gates[gate] = _gate_passes(gate, text)
        if not gates[gate]:
            continue
        spans = []
        for match in pattern().finditer(work):
            if _MASK in match.group(0):
                continue
            span = check(match, work)
            if span is not None and span[1] > span[0]:
                spans.append(span)
        for start, end in spans:
            found.append(Entity(kind, start, end))
            work = work[:start] + _MASK * (end - start) + work[end:]
    return sorted(found, key=lambda e: e.start)


def redact_spans(text: str, types: Iterable[str] | None = None) -> tuple[str, list[Entity]]:
    """``text`` with each value replaced by ``[TYPE]``, and the values' spans in the original text."""
    entities = find_pii(text, types)
    parts, pos = [], 0
    for e in entities:
        parts.append(text[pos:e.start])
        parts.append(f"[{e.type}]")
        pos = e.end
    parts.append(text[pos:])
    return "".join(parts), entities


def redact(text: str, types: Iterable[str] | None = None) -> tuple[str, dict[str, int]]:
    """Replace detected PII by ``[TYPE]`` placeholders; return the text and counts by type.

    ``types`` restricts detection to a subset of :data:`PII_TYPES` (default :data:`DEFAULT_TYPES`).
    """
    out, entities = redact_spans(text, types)
    counts: dict[str, int] = {}
    for e in entities:
        counts[e.type] = counts.get(e.type, 0) + 1
    return out, counts


def _gate_hits(joined: str, gate: str) -> list[int]:
    """Start positions in ``joined`` where ``gate`` could fire (literal finds and small regexes, C speed)."""
    g = _GATES[gate]
    if isinstance(g, tuple):
        haystack = joined.lower() if gate in _LOWERCASE_GATES else joined
        out = []
        for needle in g:
            pos = haystack.find(needle)
            while pos >= 0:
                out.append(pos)
                pos = haystack.find(needle, pos + 1)
        return out
    return [m.start() for m in g.finditer(joined)]


def redact_many(texts: list[str], types: Iterable[str] | None = None) -> list[tuple[str, dict[str, int]]]:
    """:func:`redact` over many texts: the gates scan all texts joined at once, and the full
    patterns run only on the few texts that pass a gate. Same results as calling redact on each."""
    wanted = _wanted(types)
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
