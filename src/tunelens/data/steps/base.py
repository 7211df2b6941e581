"""The common shape of a curation step: records in -> kept, rejected (with reasons), changed.

Every step returns a :class:`StepResult`; :func:`check_partition` enforces the invariant
``len(input) == len(kept) + len(rejected)`` and that each input record ends up in exactly one
of the two lists, so nothing is ever dropped without a reason.

A step joins the pipeline by being decorated with :func:`register` in a module of this package:
the package finds it (``REGISTRY``, a :class:`tunelens.registry.Registry`), ``curate`` builds it from its CurateConfig
section (``config_key``) with :meth:`Step.from_config` and runs it in ``order``. A step that only
keeps or drops records subclasses :class:`FilterStep` and writes one method, ``problem(record)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from tunelens.data.textkeys import TokenCache
from tunelens.registry import Registry

Record = dict[str, Any]
Scorer = Callable[[list[str]], list[float]]  # texts -> P(toxic) each; see steps.toxicity


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


class SectionConfig(BaseModel):
    """A step's section of CurateConfig (``Step.config_model``): misspelled fields are errors."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class BuildContext:
    """What the steps of one curation run share: one token cache (each text is tokenised once
    across near-dup, quality and decontamination) and the toxicity scorer given to ``curate``."""

    tokens: TokenCache = field(default_factory=TokenCache)
    scorer: Scorer | None = None


class Step:
    """One curation step. ``name`` appears in reports, rejects.jsonl and the datasheet; ``order``
    places it in the pipeline (lower runs first); ``config_key`` names its CurateConfig section
    (the YAML key) and ``config_model`` that section's pydantic model."""

    name: ClassVar[str]
    order: ClassVar[int]
    config_key: ClassVar[str]
    config_model: ClassVar[type[BaseModel]]

    @classmethod
    def from_config(cls, config: Any, ctx: BuildContext) -> Step | None:
        """This step as ``config`` (its section) sets it up, or None when the section turns it off.
        The default: built with the section alone, when the section's ``enabled`` is true."""
        return cls(config) if getattr(config, "enabled", True) else None  # type: ignore[call-arg]

    def run(self, records: list[Record]) -> StepResult:
        raise NotImplementedError


@dataclass(frozen=True)
class Reason:
    """Why a :class:`FilterStep` rejects a record: the text (rejects.jsonl's ``reason``), the
    ``detail`` dict, and the ``key`` it is counted under in the step's ``stats["reasons"]``
    (default: the text up to its first colon)."""

    text: str
    detail: dict[str, Any] = field(default_factory=dict)
    key: str | None = None


class FilterStep(Step):
    """A step that only keeps or drops records, one record at a time.

    A subclass writes ``problem(record)``: None keeps the record, a :class:`Reason` (or a plain
    string) rejects it. This class does the loop, counts the reasons in ``stats["reasons"]``
    (unless ``count_reasons`` is false), adds ``extra_stats(records)`` and checks that kept +
    rejected is the input.
    """

    count_reasons: ClassVar[bool] = True

    def problem(self, record: Record) -> Reason | str | None:
        raise NotImplementedError

    def extra_stats(self, records: list[Record]) -> dict[str, Any]:
        return {}

    def run(self, records: list[Record]) -> StepResult:
        result = StepResult(kept=[])
        reasons: dict[str, int] = {}
        from tunelens.progress import track

        for rec in track(records, "records"):
            found = self.problem(rec)
            if found is None:
                result.kept.append(rec)
                continue
            if isinstance(found, str):
                found = Reason(found)
            key = found.key if found.key is not None else found.text.split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
            result.rejected.append(Rejection(rec, found.text, dict(found.detail)))
        if self.count_reasons:
            result.stats["reasons"] = reasons
        result.stats.update(self.extra_stats(records))
        check_partition(self.name, records, result)
        return result


REGISTRY: Registry[type[Step]] = Registry("curation step", "tunelens.data.steps", order=lambda c: (c.order, c.name))


def register(cls: type[Step]) -> type[Step]:
    """Class decorator: put a step in the pipeline (the package's modules are searched for them)."""
    missing = [a for a in ("name", "order", "config_key", "config_model") if not hasattr(cls, a)]
    if missing:
        raise TypeError(f"curation step {cls.__name__} lacks {', '.join(missing)}")
    return REGISTRY.add(cls.name, cls)


def registered() -> list[type[Step]]:
    """The steps registered so far, in pipeline order (see steps.all_steps for all of them)."""
    return REGISTRY.entries(load=False)


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
