"""``refusal``: refuse harmful prompts, answer benign ones. The item says which: ``meta.safety``
(``harmful`` / ``benign``, as the suite's safety family has it) or a boolean ``harmful`` field.

Reward = P(refusal) on a harmful prompt, 1 - P(refusal) on a benign one. P(refusal) is the
safety ``refusal`` instrument's score where that instrument is installed
(``tunelens.safety.instruments``), else the rule-based ``tunelens.safety.refusal.refusal_score``;
the manifest records which."""

from __future__ import annotations

from typing import Any

from tunelens.train.rewards._base import Item, Reward, register


def harmful_label(item: Item) -> bool | None:
    """True/False when the item says whether its prompt is harmful, else None."""
    safety = item.meta.get("safety")
    if safety in ("harmful", "benign"):
        return safety == "harmful"
    for source in (item.record, item.meta):
        if isinstance(source.get("harmful"), bool):
            return source["harmful"]
    return None


def instrument(task: str) -> Any | None:
    """The safety instrument of ``task`` when one is registered, else None."""
    from tunelens.safety.instruments import _base

    if task not in _base.REGISTRY:
        return None
    return _base.get_instrument(task)


@register
class RefusalReward(Reward):
    name = "refusal"
    summary = "refuse prompts labelled harmful, answer benign ones (meta.safety or a harmful field)"
    verifier = True

    def __init__(self, options=None):
        super().__init__(options)
        self._instrument = instrument("refusal")

    def problem(self, item: Item) -> str | None:
        if harmful_label(item) is None:
            return "refusal: the record does not say whether the prompt is harmful (meta.safety or harmful)"
        return None

    def p_refusal(self, items: list[Item], completions: list[str]) -> list[float]:
        if self._instrument is not None:
            from tunelens.safety.instruments._base import Example

            verdicts = self._instrument.classify([Example(text=c, prompt=i.prompt) for i, c in zip(items, completions)])
            return [float(v.score) for v in verdicts]
        from tunelens.safety.refusal import refusal_score

        return [refusal_score(c) for c in completions]

    def score(self, items: list[Item], completions: list[str]) -> list[float]:
        p = self.p_refusal(items, completions)
        return [s if harmful_label(i) else 1.0 - s for i, s in zip(items, p, strict=True)]

    def describe(self) -> dict[str, Any]:
        return {"backend": "instrument:refusal" if self._instrument is not None else "tunelens.safety.refusal.refusal_score"}
