"""``ifeval``: the IFEval instruction checkers (tunelens.evaluate.ifeval) for prompts carrying
``instruction_id_list`` and ``kwargs`` (top level, as IFEval rows have them, or in ``meta``).

``level: instruction`` (default) rewards the share of instructions followed (partial credit);
``level: prompt`` gives 1 only when all are followed. Strict checking, as IFEval's strict score."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tunelens.train.rewards._base import Item, Reward, register


class IfevalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    level: Literal["instruction", "prompt"] = "instruction"


def _fields(item: Item) -> tuple[list[str] | None, list[dict[str, Any]]]:
    for source in (item.record, item.meta):
        if "instruction_id_list" in source:
            ids = source["instruction_id_list"]
            kwargs = source.get("kwargs") or [{}] * len(ids)
            return ids, kwargs
    return None, []


@register
class IfevalReward(Reward):
    name = "ifeval"
    summary = "IFEval instruction checkers for items with instruction_id_list/kwargs (share followed)"
    verifier = True
    Options = IfevalOptions

    def problem(self, item: Item) -> str | None:
        from tunelens.checks.ifeval import CHECKERS

        ids, kwargs = _fields(item)
        if ids is None:
            return "ifeval: the record has no instruction_id_list"
        if not ids:
            return "ifeval: instruction_id_list is empty"
        unknown = [i for i in ids if i not in CHECKERS]
        if unknown:
            return f"ifeval: unknown instruction id(s) {unknown}"
        if len(kwargs) != len(ids):
            return f"ifeval: {len(ids)} instruction ids but {len(kwargs)} kwargs"
        return None

    def score_one(self, item: Item, completion: str) -> float:
        from tunelens.checks.ifeval import check

        ids, kwargs = _fields(item)
        followed = [check(i, completion, k) for i, k in zip(ids, kwargs, strict=True)]
        if self.options.level == "prompt":
            return float(all(followed))
        return sum(followed) / len(followed)
