"""``python``: a user's function by import path, ``function: "package.module:name"``, called as
``f(prompt, completion, **item) -> float`` for every completion. ``prompt`` is the last user turn,
``item`` the record's fields (``id``, ``messages``, ``meta``, ...; fields named ``prompt`` or
``completion`` are not passed twice)."""

from __future__ import annotations

import importlib
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tunelens.errors import ConfigError
from tunelens.train.rewards._base import Item, Reward, register


class PythonOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    function: str = Field(description="package.module:function")

    @field_validator("function")
    @classmethod
    def _path(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", value):
            raise ValueError(f"{value!r} is not an import path of the form package.module:function")
        return value


def load_function(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"reward python: cannot import {module_name!r} (from {path!r}): {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"reward python: {module_name!r} has no function {attr!r}")
    return fn


@register
class PythonReward(Reward):
    name = "python"
    summary = "your function f(prompt, completion, **item) -> float, by import path (options.function)"
    Options = PythonOptions

    def __init__(self, options=None):
        super().__init__(options)
        self._fn = load_function(self.options.function)

    def score_one(self, item: Item, completion: str) -> Any:
        fields = {k: v for k, v in item.record.items() if k not in ("prompt", "completion")}
        fields.setdefault("id", item.id)
        return self._fn(item.prompt, completion, **fields)

    def describe(self) -> dict[str, Any]:
        return {"function": self.options.function}
