"""A generated task instance, before it becomes a canonical record."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Task:
    template_id: str
    instruction: str
    target: str
    checker: str
    checker_kwargs: dict[str, Any]
    context: str | None = None
    context_first: bool = False  # passage before the instruction in the user message
    safety: str | None = None  # "harmful" | "benign" for the safety family
    group: str | None = None  # instances sharing a group always land in the same split
    extra_meta: dict[str, Any] = field(default_factory=dict)

    def user_message(self) -> tuple[str, list[int], list[int] | None]:
        """The user content and the [start, end) character spans of instruction and context."""
        if self.context is None:
            return self.instruction, [0, len(self.instruction)], None
        sep = "\n\n"
        if self.context_first:
            text = self.context + sep + self.instruction
            c0 = 0
            i0 = len(self.context) + len(sep)
        else:
            text = self.instruction + sep + self.context
            i0 = 0
            c0 = len(self.instruction) + len(sep)
        return text, [i0, i0 + len(self.instruction)], [c0, c0 + len(self.context)]


def pick_template(rng: random.Random, family: str, templates: list[str]) -> tuple[str, str]:
    i = rng.randrange(len(templates))
    return f"{family}/{i}", templates[i]


def join_words(items: list[str], conj: str = "and") -> str:
    items = [str(x) for x in items]
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + f" {conj} " + items[-1]


def quoted(items: list[str]) -> str:
    return join_words([f'"{x}"' for x in items])
