"""``length``: 0 up to a budget, then a penalty growing with the excess:
``-min(cap, (n - budget) / budget)`` where ``n`` counts words (or characters)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tunelens.train.rewards._base import Item, Reward, register


class LengthOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    budget: int = Field(100, ge=1, description="Words (or characters) allowed without penalty.")
    unit: Literal["words", "chars"] = "words"
    cap: float = Field(1.0, gt=0, allow_inf_nan=False, description="The largest penalty.")


@register
class LengthReward(Reward):
    name = "length"
    summary = "0 within `budget` words (or chars), then -(excess / budget) down to -cap"
    Options = LengthOptions

    def score_one(self, item: Item, completion: str) -> float:
        o = self.options
        n = len(completion.split()) if o.unit == "words" else len(completion)
        return -min(o.cap, max(0, n - o.budget) / o.budget)
