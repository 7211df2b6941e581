"""Prompt injection in user turns, system/developer/assistant turns and retrieved documents.

A text is read through several *views*, and its score is the highest of them:

- the text itself, normalised (NFKC, zero-width characters removed, leetspeak letters restored);
- hidden parts: HTML comments, hidden elements, markdown comments and link titles;
- base64 runs decoded to text (an encoded instruction is decoded and rescanned);
- for longer texts, windows of two consecutive sentences (an instruction inside a document).

Each view is scored by a TF-IDF (char_wb 2-5 + word 1-2) logistic regression trained by
``tunelens safety train-injection`` (:mod:`tunelens.safety.train_injection`). Phrase rules
("ignore all previous instructions", their German, French, Spanish and Chinese forms) raise a view to
``RULE_SCORE``; they match instructions, never a bare word such as a name ("Dan") or "jailbreak".
A view of fewer than ``SHORT_WORDS`` words has its classifier score scaled down in proportion (a
greeting such as "Say hi" is too short for its few n-grams to be evidence; rules still apply).
Validation figures: ``cards/injection.json``.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from pathlib import Path
from typing import Any

from tunelens.errors import TunelensError
from tunelens.safety.instruments._base import Example, Instrument, Verdict, register

ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "injection.joblib"
DEFAULT_THRESHOLD = 0.5
RULE_SCORE = 0.95

# (name, pattern): instructions to drop earlier instructions, in a few languages. Case-insensitive.
RULES: list[tuple[str, str]] = [
    ("ignore_instructions_en", r"\b(ignore|disregard|forget|override|set aside)\b[^.!?\n]{0,40}\b"
     r"(previous|prior|above|preceding|earlier|original|all)\b[^.!?\n]{0,30}\b"
     r"(instructions?|prompts?|rules|directives|guidelines|orders|context)\b"),
    ("forget_everything_en", r"\bforget (about )?everything (you were told|above|before)\b"),
    ("reveal_prompt_en", r"\b(reveal|print|output|repeat|show)\b[^.!?\n]{0,20}\b(your|the) (system|initial|hidden) "
     r"(prompt|instructions)\b"),
    ("persona_override_en", r"\b(you are now|from now on,? you are)\b[^.!?\n]{0,40}\b(no|without) "
     r"(rules|restrictions|filters|limits|guidelines)\b|\bdo anything now\b[^.!?\n]{0,40}\b(rules|restrictions)\b"),
    ("ignore_instructions_de", r"\b(ignorier\w*|vergiss|vergessen sie|missachte\w*)\b[^.!?\n]{0,40}\b"
     r"(alle[sn]?|vorherige\w*|bisherige\w*|obige\w*|vorangehende\w*)\b[^.!?\n]{0,30}"
     r"(anweisungen|aufgaben|aufträge|befehle|regeln|vorgaben|gesagt)"),
    ("forget_everything_de", r"\bvergiss (jetzt |nun )?alles(,| was| davor| bisher| vorher)"),
    ("ignore_instructions_es", r"\b(olvid[ae]|ignora)\w*\b[^.!?\n]{0,30}\b(instrucciones|reglas)\b"),
    ("ignore_instructions_fr", r"\b(ignore[rz]?|oublie[rz]?)\b[^.!?\n]{0,30}(toutes les instructions|instructions "
     r"précédentes|les règles|tes règles|les consignes|tes consignes|tout ce qu'on t'a dit)"),
    ("ignore_instructions_zh", r"(忽略|忽视|无视|忘记|忘掉|不要再遵守)[^。！？\n]{0,12}(之前|以上|先前|上面|所有|系统)[^。！？\n]{0,12}"
     r"(指令|指示|规则|设定|提示)"),
]
_RULES = [(name, re.compile(pat, re.IGNORECASE)) for name, pat in RULES]

_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i", "|": "l"})
_LEET_WORD = re.compile(r"\S*[A-Za-z]\S*")
_HIDDEN = [
    re.compile(r"<!--(.*?)(?:-->|$)", re.DOTALL),
    re.compile(r"<(\w+)[^>]*(?:hidden|display\s*:\s*none|visibility\s*:\s*hidden)[^>]*>(.*?)</\1>", re.DOTALL | re.IGNORECASE),
    re.compile(r"^\s*\[//\]:\s*#\s*[(\"'](.*?)[)\"']\s*$", re.MULTILINE),
    re.compile(r"\[[^\]]*\]\([^)\s]*\s+\"([^\"]+)\"\)"),
]
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4}){4,}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_SENTENCE = re.compile(r"(?<=[.!?。！？])\s+|\n+")
SHORT_WORDS = 4  # a view of fewer words is scored p * words / SHORT_WORDS: a few n-grams are weak evidence
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")


def _words(text: str) -> int:
    return len(text.split()) + len(_CJK.findall(text)) // 2


WINDOW_MIN_CHARS = 80  # texts longer than this (and of 3+ sentences) are also read two sentences at a time
MAX_WINDOWS = 200


def deleet(text: str) -> str:
    """Letters restored in words that mix letters with digits or symbols ("1gn0re" -> "ignore")."""
    def fix(m: re.Match) -> str:
        w = m.group(0)
        core = w.rstrip(".,;:?")
        if any(c.isdigit() or c in "@$|" for c in core) and sum(c.isalpha() for c in core) >= 2:
            return core.translate(_LEET) + w[len(core):]
        return w
    return _LEET_WORD.sub(fix, text)


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text if isinstance(text, str) else "")
    return deleet(_ZERO_WIDTH.sub("", text))


def _decoded_base64(text: str) -> list[str]:
    out = []
    for m in _BASE64.finditer(text):
        run = m.group(0)
        if len(run) < 16:
            continue
        try:
            raw = base64.b64decode(run + "=" * (-len(run) % 4), validate=True)
            dec = raw.decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            continue
        if sum(c.isalpha() or c.isspace() for c in dec) >= 0.8 * len(dec) and " " in dec.strip():
            out.append(dec)
    return out


def views(text: str) -> list[tuple[str, str]]:
    """(view name, text) pairs the detector scores; see the module docstring."""
    norm = normalise(text)
    out = [("text", norm)]
    for rx in _HIDDEN:
        for m in rx.finditer(norm):
            part = m.group(m.lastindex or 0).strip()
            if part:
                out.append(("hidden", part))
    for dec in _decoded_base64(text):
        out.append(("base64", normalise(dec)))
    if len(norm) > WINDOW_MIN_CHARS:
        sents = [s.strip() for s in _SENTENCE.split(norm) if s.strip()]
        if len(sents) > 2:
            for i in range(min(len(sents) - 1, MAX_WINDOWS)):
                out.append(("window", sents[i] + " " + sents[i + 1]))
    return out


def rule_hits(text: str) -> list[str]:
    """Names of the phrase rules that match ``text`` (normalised first)."""
    norm = normalise(text)
    return [name for name, rx in _RULES if rx.search(norm)]


def load_artifact(path: str | Path | None = None) -> dict[str, Any]:
    import joblib

    artifact = Path(path) if path else ARTIFACT
    if not artifact.is_file():
        raise TunelensError(f"injection classifier not found at {artifact}; run `tunelens safety train-injection`")
    try:
        payload = joblib.load(artifact)
    except Exception as exc:  # unpickling across sklearn versions can fail in many ways
        raise TunelensError(f"could not load injection classifier {artifact} ({exc}); retrain it with "
                            "`tunelens safety train-injection`") from None
    if not isinstance(payload, dict) or "pipeline" not in payload:
        raise TunelensError(f"{artifact} is not a tunelens injection artifact (no 'pipeline' entry)")
    return payload


@register
class InjectionInstrument(Instrument):
    """P(injection) of a text: the highest score over its views; ``detail`` names the view and rules."""

    task = "injection"
    name = "injection"
    labels = ("injection", "benign")
    positive = ("injection",)
    needs_prompt = False

    def __init__(self, path: str | Path | None = None, threshold: float | None = None):
        payload = load_artifact(path)
        self.pipeline = payload["pipeline"]
        self.threshold = float(payload.get("threshold", DEFAULT_THRESHOLD) if threshold is None else threshold)
        self.info = payload.get("report") or payload.get("info") or {}

    @classmethod
    def from_pipeline(cls, pipeline, threshold: float = DEFAULT_THRESHOLD) -> InjectionInstrument:
        """An instrument over a fitted pipeline in memory (training and validation)."""
        inst = cls.__new__(cls)
        inst.pipeline, inst.threshold, inst.info = pipeline, float(threshold), {}
        return inst

    def score_texts(self, texts: list[str]) -> list[dict[str, Any]]:
        """Per text: ``score``, ``model_score`` (classifier, best view), ``view`` and ``rules``."""
        if isinstance(texts, str):
            raise TypeError("score_texts() takes a list of texts, not a single string")
        all_views, owner = [], []
        for i, t in enumerate(texts):
            for v in views(t if isinstance(t, str) else ""):
                all_views.append(v)
                owner.append(i)
        probs = self.pipeline.predict_proba([v[1] for v in all_views])[:, 1] if all_views else []
        out = [{"score": 0.0, "model_score": 0.0, "view": "text", "rules": []} for _ in texts]
        for (name, text), i, p in zip(all_views, owner, probs):
            n_words = _words(text)
            if n_words < SHORT_WORDS:
                p = p * n_words / SHORT_WORDS
            hits = [h for h, rx in _RULES if rx.search(text)]
            score = max(float(p), RULE_SCORE if hits else 0.0)
            o = out[i]
            o["model_score"] = max(o["model_score"], float(p))
            for h in hits:
                if h not in o["rules"]:
                    o["rules"].append(h)
            if score > o["score"]:
                o["score"], o["view"] = score, name
        return out

    def classify(self, examples: list[Example]) -> list[Verdict]:
        res = self.score_texts([e.text for e in examples])
        return [Verdict("injection" if r["score"] >= self.threshold else "benign", r["score"],
                        {"view": r["view"], "rules": r["rules"], "model_score": round(r["model_score"], 4)})
                for r in res]
