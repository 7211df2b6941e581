"""``suite``: the item's own checker (``meta.checker`` with ``meta.checker_kwargs``), as the
builtin eval suite scores it: 1 or 0, or the checker's own number in [0, 1] where it returns one
(partial credit)."""

from __future__ import annotations

import inspect

from tunelens.train.rewards._base import Item, Reward, register


@register
class SuiteReward(Reward):
    name = "suite"
    summary = "the item's own checker (meta.checker): 1 pass, 0 fail, or the checker's partial credit"
    verifier = True

    def problem(self, item: Item) -> str | None:
        from tunelens.suite.checkers import CHECKERS

        checker = item.meta.get("checker")
        if checker is None:
            return "suite: the record names no checker (meta.checker)"
        if checker not in CHECKERS:
            return f"suite: unknown checker {checker!r} in meta.checker"
        try:
            inspect.signature(CHECKERS[checker]).bind("", **(item.meta.get("checker_kwargs") or {}))
        except TypeError as exc:
            return f"suite: checker {checker!r} cannot take meta.checker_kwargs: {exc}"
        return None

    def score_one(self, item: Item, completion: str) -> float:
        from tunelens.suite.checkers import CHECKERS

        value = CHECKERS[item.meta["checker"]](completion, **(item.meta.get("checker_kwargs") or {}))
        return float(value) if isinstance(value, bool) else value
