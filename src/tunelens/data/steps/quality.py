"""Quality heuristics on the replies: too short, repetitive, boilerplate non-answers, prompt echoes."""

from __future__ import annotations

import re

from pydantic import Field

from tunelens.data.steps.base import FilterStep, Reason, Record, SectionConfig, prompt_and_responses, prompt_texts, register
from tunelens.data.textkeys import TokenCache

# Non-answers: AI disclaimers and empty placeholders (Alpaca has literal "<nooutput>" replies).
# Each pattern has a literal gate (lower case) that must occur for the regex to be worth running.
BOILERPLATE: list[tuple[str, str]] = [
    (r"\bas an ai(?: language)? model\b", "as an ai"),
    (r"\bas a (?:large )?language model\b", "language model"),
    (r"\bi(?:'m| am) (?:just |only )?an? (?:ai|artificial intelligence|language model|virtual assistant)\b(?! (?:researcher|engineer))", "i"),
    (r"\bi (?:cannot|can't|am unable to|am not able to) (?:browse|access|search) the (?:internet|web)\b", "the "),
    (r"\bi do not have (?:the ability|personal (?:opinions|experiences|feelings|preferences)|access to real-time)\b", "do not have"),
    (r"^\s*<\s*no\s*output\s*>\s*$", "output"),
    (r"^\s*(?:n/?a|none|no output|null)\.?\s*$", ""),
]
_SHORT = 20  # the anchored placeholder patterns only matter for very short replies


def repetition(tokens: list, n: int = 3) -> float:
    """Share of word n-grams that repeat an earlier one (0 = none, close to 1 = a loop)."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def echo_score(prompt_tokens: list, reply_tokens: list) -> float:
    """Jaccard similarity of the word-bigram sets of prompt and reply. Symmetric on purpose: a
    short reply copied out of the prompt (a chosen option) or an answer that restates the
    question scores low; only a reply that is essentially the prompt again scores high."""
    if len(reply_tokens) < 4:
        return 0.0
    reply = set(zip(reply_tokens, reply_tokens[1:]))
    prompt = set(zip(prompt_tokens, prompt_tokens[1:]))
    return len(reply & prompt) / len(reply | prompt)


def _rejected(check: str, text: str, **detail) -> Reason:
    """A quality rejection, counted under ``check``, which its detail names too."""
    return Reason(text, {"check": check, **detail}, key=check)



class QualityConfig(SectionConfig):
    enabled: bool = True
    min_response_chars: int = Field(1, ge=0, description="Shorter replies (after stripping) are rejected.")
    min_response_words: int = Field(0, ge=0, description="Replies with fewer words are rejected (0: off; emoji, Morse or ':-)' have no words).")
    max_repetition: float = Field(0.75, gt=0.0, le=1.0, description="Reject replies whose share of repeated word 3-grams is above this.")
    repetition_min_words: int = Field(30, ge=3, description="Only replies with at least this many words are checked for repetition.")
    boilerplate: bool = Field(True, description="Reject boilerplate non-answers ('As an AI language model...').")
    extra_boilerplate: list[str] = Field(default_factory=list, description="More regexes that mark a non-answer.")
    prompt_echo: float = Field(0.9, gt=0.0, le=1.0, description="Reject replies whose word-pair set has at least this Jaccard similarity with the prompt's.")

@register
class Quality(FilterStep):
    name = "quality"
    order = 70
    config_key = "quality"
    config_model = QualityConfig

    def __init__(self, config: QualityConfig, tokens: TokenCache | None = None) -> None:
        self.config = config
        self.tokens = tokens or TokenCache()
        patterns = (BOILERPLATE if config.boilerplate else []) + [(p, "") for p in config.extra_boilerplate]
        try:
            self.boilerplate = [(re.compile(p, re.IGNORECASE), gate) for p, gate in patterns]
        except re.error as exc:
            from tunelens.errors import ConfigError

            raise ConfigError(f"quality.extra_boilerplate: invalid regex {exc.pattern!r}: {exc}") from None

    @classmethod
    def from_config(cls, config, ctx):
        return cls(config, ctx.tokens) if config.enabled else None

    def problem(self, rec: Record) -> Reason | None:
        cfg = self.config
        prompt_parts, replies = prompt_texts(rec), prompt_and_responses(rec)[1]
        prompt_tokens = None
        for reply in replies:
            text = reply.strip()
            tokens = self.tokens.hashes(reply)
            if len(text) < cfg.min_response_chars:
                return _rejected("too_short", f"reply too short: {len(text)} characters < {cfg.min_response_chars}")
            if len(tokens) < cfg.min_response_words:
                return _rejected("too_short", f"reply too short: {len(tokens)} words < {cfg.min_response_words}")
            lower = text.lower()
            for pattern, gate in self.boilerplate:
                if gate not in lower or (pattern.pattern.startswith("^") and len(text) > _SHORT):
                    continue
                match = pattern.search(text)
                if match:
                    return _rejected("boilerplate", f"boilerplate non-answer: {match.group(0).strip()!r}", pattern=pattern.pattern)
            rep = repetition(tokens) if len(tokens) >= cfg.repetition_min_words else 0.0
            if rep > cfg.max_repetition:
                return _rejected("repetition", f"high repetition: {rep:.0%} of word 3-grams repeated", repetition=round(rep, 3))
            if prompt_tokens is None:
                prompt_tokens = [h for t in prompt_parts for h in self.tokens.hashes(t)]
            echo = echo_score(prompt_tokens, tokens)
            if echo >= cfg.prompt_echo:
                return _rejected("prompt_echo", f"reply repeats the prompt (word-pair Jaccard {echo:.2f})", echo=round(echo, 3))
        return None
