"""The common shape of a curation step: records in -> kept, rejected (with reasons), changed.

Every step returns a :class:`StepResult`; :func:`check_partition` enforces the invariant
``len(input) == len(kept) + len(rejected)`` and that each input record ends up in exactly one
of the two lists, so nothing is ever dropped without a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

Record = dict[str, Any]


@dataclass
class Rejection:
    record: Record
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Change:
    """One record modified by a step: the changed fields, each with before and after."""

    record_id: str
    fields: list[dict[str, Any]]
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepResult:
    kept: list[Record]
    rejected: list[Rejection] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


class Step(Protocol):
    name: str

    def run(self, records: list[Record]) -> StepResult: ...


class InvariantError(RuntimeError):
    """A step lost or invented records: a bug, never a user error."""


def check_partition(step: str, records: list[Record], result: StepResult) -> None:
    """Raise unless every input record is in exactly one of kept / rejected."""
    n_in, n_kept, n_rej = len(records), len(result.kept), len(result.rejected)
    if n_in != n_kept + n_rej:
        raise InvariantError(f"step {step!r}: {n_in} records in but {n_kept} kept + {n_rej} rejected")
    seen = {id(r) for r in result.kept}
    seen.update(id(rej.record) for rej in result.rejected)
    if len(seen) != n_in or any(id(r) not in seen for r in records):
        raise InvariantError(f"step {step!r}: kept + rejected is not the same set of records as its input")


def message_fields(record: Record) -> list[tuple[str, str]]:
    """(field path, text) for every free-text field of a validated record."""
    if record.get("kind") == "preference":
        out = [(f"prompt[{i}].content", m["content"]) for i, m in enumerate(record["prompt"])]
        return out + [("chosen", record["chosen"]), ("rejected", record["rejected"])]
    return [(f"messages[{i}].content", m["content"]) for i, m in enumerate(record["messages"])]


def set_field(record: Record, path: str, value: str) -> None:
    """Set a field addressed by :func:`message_fields`'s path."""
    if path in ("chosen", "rejected"):
        record[path] = value
        return
    head, _, _ = path.partition(".")
    name, _, index = head.partition("[")
    record[name][int(index.rstrip("]"))]["content"] = value


def prompt_and_responses(record: Record) -> tuple[str, list[str]]:
    """The user-side text and the reply texts (assistant turns, or chosen for a preference)."""
    if record.get("kind") == "preference":
        prompt = "\n".join(m["content"] for m in record["prompt"] if m["role"] != "assistant")
        return prompt, [record["chosen"]]
    prompt = "\n".join(m["content"] for m in record["messages"] if m["role"] != "assistant")
    return prompt, [m["content"] for m in record["messages"] if m["role"] == "assistant"]


def prompt_texts(record: Record) -> list[str]:
    """The user/system turn texts (what the reply answers)."""
    turns = record["prompt"] if record.get("kind") == "preference" else record["messages"]
    return [m["content"] for m in turns if m["role"] != "assistant"]


def record_text(record: Record) -> str:
    return "\n".join(text for _, text in message_fields(record))
