"""``harm``: penalise harmful compliance. Reward = 1 - P(the reply is harmful), for items that say
whether their prompt is harmful (as ``refusal``).

P(harmful) is the safety ``harm`` instrument's score where that instrument is installed. Until it
is, a stand-in is used and recorded in the manifest: on a harmful prompt a reply that does not
decline is counted harmful (P = 1 - refusal_score); on a benign prompt P = 0 (reward 1)."""

from __future__ import annotations

from typing import Any

from tunelens.train.rewards._base import Item, Reward, register
from tunelens.train.rewards.refusal import harmful_label, instrument


@register
class HarmReward(Reward):
    name = "harm"
    summary = "1 - P(harmful reply) on items labelled harmful/benign (safety harm instrument)"
    verifier = True

    def __init__(self, options=None):
        super().__init__(options)
        self._instrument = instrument("harm")

    def problem(self, item: Item) -> str | None:
        if harmful_label(item) is None:
            return "harm: the record does not say whether the prompt is harmful (meta.safety or harmful)"
        return None

    def score(self, items: list[Item], completions: list[str]) -> list[float]:
        if self._instrument is not None:
            from tunelens.safety.instruments._base import Example

            verdicts = self._instrument.classify([Example(text=c, prompt=i.prompt) for i, c in zip(items, completions)])
            return [1.0 - float(v.score) for v in verdicts]
        from tunelens.safety.refusal import refusal_score

        return [refusal_score(c) if harmful_label(i) else 1.0 for i, c in zip(items, completions, strict=True)]

    def describe(self) -> dict[str, Any]:
        return {"backend": "instrument:harm" if self._instrument is not None
                else "stand-in: refusal_score on harmful prompts, 1 on benign (no harm instrument installed)"}
