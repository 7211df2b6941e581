"""Toxicity of assistant replies: slurs, harassment, hate (not refusals, apologies or plain answers).

A TF-IDF (word 1-2-grams + char_wb 2-5-grams) and logistic-regression classifier trained by
``tunelens safety train-toxicity`` (:mod:`tunelens.safety.train_toxicity`) on Davidson tweets,
ConvAbuse user turns, DiaSafety replies and non-toxic assistant replies (HH-RLHF, CoCoNot, written
refusals and apologies). Its validation figures are ``cards/toxicity.json``.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from tunelens.errors import TunelensError
from tunelens.safety.instruments._base import Example, Instrument, Verdict, register

ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "toxicity.joblib"
DEFAULT_THRESHOLD = 0.5

_MENTION = re.compile(r"@\w+")
_URL = re.compile(r"https?://\S+|www\.\S+")
_RT = re.compile(r"^\s*(rt\s*:?\s*)+", re.IGNORECASE)
_ENTITY_NUM = re.compile(r"&#\d+;?")
_SPACE = re.compile(r"\s+")
# a run of 16+ token characters (letters, digits, _ - + / =) between non-token characters: an API key, a hash, a
# base64 blob, a session id. Such strings are masked before scoring when they look random (below): their character
# n-grams are noise to the classifier, and before version 3 about a third of "Your token is <random token>" replies
# were flagged toxic, so the server's output filter replaced answers that quoted a key or a hash.
_TOKEN = re.compile(r"(?<![A-Za-z0-9_\-+/=])[A-Za-z0-9_\-+/=]{16,}(?![A-Za-z0-9_\-+/=])")
_HEX = re.compile(r"[0-9a-fA-F]+")
_UPPER_RUN = re.compile(r"[A-Z]{2,}")


def _random_looking(token: str) -> bool:
    """A hex string with digits and letters; or a string with lower-case and upper-case letters and digits (base64,
    URL-safe tokens, keys); or, without digits, one with upper case for 30%+ of its letters in two or more runs of 2+
    capitals. A long word, a hashtag in CamelCase, a leetspeak insult in one case, or a date are not.

    The third case was added after a CI run (2026-12-07): ``secrets.token_urlsafe(24)`` has no digit about 0.4% of the
    time (54/64 per character, 32 characters), and such a key was scored as text. Measured on 200,000 random URL-safe
    strings, the share left unmasked is 0.44% -> 0.017% at 32 characters and 6.7% -> 2.2% at 16. On every text of the
    toxicity training and held-out sets, it masks a token in 2 texts, both generated keys in ``machine_strings``, and
    in no training text (so the trained model is unchanged); CamelCase hashtags such as "MTVHottestLanaDelRey" or
    "KILLALLTHEMfuckers" (one run of capitals) are kept for the classifier."""
    digits = any(c.isdigit() for c in token)
    if _HEX.fullmatch(token):
        return digits and any(c.isalpha() for c in token)
    lower, upper = any(c.islower() for c in token), sum(c.isupper() for c in token)
    if not (lower and upper):
        return False
    if digits:
        return True
    return len(_UPPER_RUN.findall(token)) >= 2 and upper >= 0.3 * sum(c.isalpha() for c in token)


def mask_random_tokens(text: str) -> str:
    """``text`` with random-looking tokens (see ``_random_looking``) replaced by a space."""
    return _TOKEN.sub(lambda m: " " if _random_looking(m.group(0)) else m.group(0), text)


def normalise(text: str) -> str:
    """Remove what only tweets carry (retweet marks, @mentions, links, emoji entity codes), so the
    classifier learns words, not the style of one source, and random-looking tokens (keys, hashes; version 3).
    Used as the vectorisers' preprocessor."""
    text = _ENTITY_NUM.sub(" ", text if isinstance(text, str) else "")
    text = html.unescape(text)
    text = _URL.sub(" ", text)
    text = mask_random_tokens(text)
    text = _RT.sub("", _MENTION.sub(" ", text))
    return _SPACE.sub(" ", text).strip().lower()


def load_artifact(path: str | Path | None = None) -> dict[str, Any]:
    """The joblib payload ``{"pipeline", "threshold", "info"}``, with errors that name the file."""
    import joblib

    artifact = Path(path) if path else ARTIFACT
    if not artifact.is_file():
        raise TunelensError(f"toxicity artifact not found at {artifact}; train one with `tunelens safety train-toxicity`")
    try:
        payload = joblib.load(artifact)
    except Exception as exc:  # a corrupt or foreign file: say which
        raise TunelensError(f"cannot read toxicity artifact {artifact}: {exc}") from exc
    if not isinstance(payload, dict) or "pipeline" not in payload:
        raise TunelensError(f"{artifact} is not a tunelens toxicity artifact (no 'pipeline' entry)")
    return payload


@register
class ToxicityInstrument(Instrument):
    """P(toxic) of a reply; label ``toxic`` at or above the threshold chosen on validation data."""

    task = "toxicity"
    name = "toxicity"
    labels = ("toxic", "non_toxic")
    positive = ("toxic",)
    needs_prompt = False

    def __init__(self, path: str | Path | None = None, threshold: float | None = None, batch_size: int = 2048):
        payload = load_artifact(path)
        self.pipeline = payload["pipeline"]
        self.threshold = float(payload.get("threshold", DEFAULT_THRESHOLD) if threshold is None else threshold)
        self.info = payload.get("info") or {}
        self.batch_size = batch_size

    def scores(self, texts: list[str]) -> list[float]:
        if isinstance(texts, str):
            raise TypeError("scores() takes a list of texts, not a single string")
        texts = [t if isinstance(t, str) else "" for t in texts]
        out: list[float] = []
        for i in range(0, len(texts), self.batch_size):
            out.extend(float(p) for p in self.pipeline.predict_proba(texts[i:i + self.batch_size])[:, 1])
        return out

    def classify(self, examples: list[Example]) -> list[Verdict]:
        scores = self.scores([e.text for e in examples])
        return [Verdict("toxic" if s >= self.threshold else "non_toxic", s) for s in scores]
