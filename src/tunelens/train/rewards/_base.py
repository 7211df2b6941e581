"""What a reward is, the one registry of them, and the composition TRL calls.

A reward plug-in is a module of this package that decorates a :class:`Reward` subclass with
:func:`register`. It says which items it can score (:meth:`Reward.problem`: None, or the reason
it cannot) and scores completions (:meth:`Reward.score_one`, or :meth:`Reward.score` for a
batch). An :class:`Item` is one prompt from the data stage: its id, the chat messages sent to the
model, the user's text, and the whole record (``record``) the reward reads its checker from.

A *verifier* reward (``verifier = True``: suite, ifeval, refusal, harm) checks something the item
itself names; a prompt that no configured verifier can check is rejected with each verifier's
reason. Generic rewards (length, format, python) score every item.

A reward that raises or returns anything but a finite number stops the run with a
:class:`RewardError` naming the reward, the item and the problem: a reward is never silently 0.

Floor: ``train`` (imports ``registry``, ``errors``, pydantic and the standard library here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from tunelens.errors import TunelensError
from tunelens.registry import Registry


class RewardError(TunelensError):
    """A reward function failed or returned something that is not a number."""


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Item:
    id: str
    messages: list[dict[str, str]]  # what the model is prompted with (system/user turns)
    record: dict[str, Any] = field(default_factory=dict)  # the data-stage row, as read

    @property
    def prompt(self) -> str:
        """The last user turn: the instruction the completion answers."""
        users = [m["content"] for m in self.messages if m["role"] == "user"]
        return users[-1] if users else ""

    @property
    def meta(self) -> dict[str, Any]:
        return self.record.get("meta") or {}


class Reward:
    """Base class of a reward plug-in. Subclasses set ``name``, ``summary`` and ``score_one`` (or ``score``)."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    verifier: ClassVar[bool] = False
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, options: dict[str, Any] | None = None):
        self.options = self.Options.model_validate(options or {})

    def problem(self, item: Item) -> str | None:
        """None when this reward can score ``item``, else why not (the reject reason)."""
        return None

    def score_one(self, item: Item, completion: str) -> float:
        raise NotImplementedError

    def score(self, items: list[Item], completions: list[str]) -> list[Any]:
        return [self.score_one(item, c) for item, c in zip(items, completions, strict=True)]

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this reward (backends used, options)."""
        return {"options": self.options.model_dump()}


REGISTRY: Registry[type[Reward]] = Registry("reward", "tunelens.train.rewards")


def register(cls: type[Reward]) -> type[Reward]:
    if not cls.name:
        raise TypeError(f"reward {cls.__name__} has no name")
    return REGISTRY.add(cls.name, cls)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    try:
        import numpy as np

        if isinstance(value, np.generic):
            value = value.item()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(value, "item") and callable(value.item) and getattr(value, "numel", lambda: 0)() == 1:
        value = value.item()  # a one-element tensor
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value)):
        return float(value)
    return None


class Composed:
    """The configured rewards as TRL reward functions ``f(prompts, completions, **kwargs)``.

    The dataset carries an ``item_index`` column; each function looks the item up, scores the
    completions it applies to and returns None (TRL: not applicable, left out of the weighted
    sum and of that reward's mean) for the others.
    """

    def __init__(self, specs: list[Any], items: list[Item]):
        self.specs = specs
        self.items = items
        self.rewards = [REGISTRY.get(s.name)(s.options) for s in specs]
        self.applies = [[r.problem(item) is None for item in items] for r in self.rewards]

    @property
    def weights(self) -> list[float]:
        return [float(s.weight) for s in self.specs]

    def functions(self) -> list[Any]:
        return [self._function(i) for i in range(len(self.specs))]

    def _function(self, k: int):
        spec, reward, applies = self.specs[k], self.rewards[k], self.applies[k]

        def reward_function(prompts: list[Any], completions: list[Any], item_index: list[int], **_: Any) -> list[Any]:
            texts = [_completion_text(c) for c in completions]
            todo = [j for j, idx in enumerate(item_index) if applies[idx]]
            out: list[Any] = [None] * len(texts)
            if not todo:
                return out
            items = [self.items[item_index[j]] for j in todo]
            mine = [texts[j] for j in todo]
            try:
                values = reward.score(items, mine)
            except Exception as batch_error:  # noqa: BLE001 - find the item, then stop the run with it
                for item, text in zip(items, mine, strict=True):
                    try:
                        reward.score([item], [text])
                    except Exception as exc:  # noqa: BLE001
                        raise RewardError(f"reward {spec.key!r} failed on item {item.id!r}: "
                                          f"{type(exc).__name__}: {exc}") from exc
                raise RewardError(f"reward {spec.key!r} failed on a batch of {len(items)} items "
                                  f"(first {items[0].id!r}): {type(batch_error).__name__}: {batch_error}") from batch_error
            if not isinstance(values, (list, tuple)) or len(values) != len(items):
                raise RewardError(f"reward {spec.key!r} returned {type(values).__name__} for {len(items)} completions "
                                  f"(first item {items[0].id!r}); it must return one number per completion")
            for j, item, value in zip(todo, items, values, strict=True):
                number = _number(value)
                if number is None:
                    raise RewardError(f"reward {spec.key!r} returned {value!r} ({type(value).__name__}) for item "
                                      f"{item.id!r}; a reward must be a finite number")
                out[j] = number
            return out

        reward_function.__name__ = spec.key
        reward_function.__qualname__ = spec.key
        return reward_function


def _completion_text(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):  # conversational: [{"role": "assistant", "content": ...}]
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)
