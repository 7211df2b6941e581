"""``format``: 1 when the completion matches a regular expression, else 0."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tunelens.train.rewards._base import Item, Reward, register


class FormatOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pattern: str = Field(description="A Python regular expression.")
    match: Literal["search", "fullmatch"] = Field("search", description="Anywhere in the reply, or the whole reply (stripped).")
    ignore_case: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


@register
class FormatReward(Reward):
    name = "format"
    summary = "1 when the reply matches `pattern` (search or fullmatch), else 0"
    Options = FormatOptions

    def __init__(self, options=None):
        super().__init__(options)
        self._re = re.compile(self.options.pattern, re.I if self.options.ignore_case else 0)

    def score_one(self, item: Item, completion: str) -> float:
        if self.options.match == "fullmatch":
            return float(self._re.fullmatch(completion.strip()) is not None)
        return float(self._re.search(completion) is not None)
