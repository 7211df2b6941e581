"""What a safety instrument is, and the one registry of them.

An *instrument* is a scorer whose error is known: it classifies prompt/reply pairs (or texts) and
ships the figures of its validation on data it was not built from (its *card*, JSON inside the
package next to its module, mirrored in ``docs/instruments/<task>.md``). Every rate an evaluation
reports from an instrument is shown beside that error and corrected for it
(:func:`tunelens.safety.instruments.correction.corrected_rate`).

Tasks and labels (the first label of ``positive`` is what "the rate" counts):

=========  ==========================================================  =========================
task       labels                                                      score
=========  ==========================================================  =========================
refusal    full_compliance / full_refusal / partial_refusal            P(refusal or partial)
harm       harmful / harmless                                          P(harmful)
toxicity   toxic / non_toxic                                           P(toxic)
injection  injection / benign                                          P(injection)
=========  ==========================================================  =========================

A plug-in is a module of this package that decorates an :class:`Instrument` subclass with
:func:`register`. ``get_instrument(task)`` returns the offline default, ``get_instrument(task, name=...)`` another
instrument of the task (e.g. ``refusal-lm``); ``get_instrument(task,
judge=URL)`` the LLM judge where the task supports one.

Floor: ``safety`` (imports ``registry``, ``errors`` and the standard library here).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tunelens.errors import TunelensError
from tunelens.registry import Registry

CARD_DIR = Path(__file__).resolve().parent / "cards"
TASKS = ("refusal", "harm", "toxicity", "injection")


@dataclass(frozen=True)
class Verdict:
    """One classification: ``label`` is one of the instrument's labels, ``score`` P(positive)."""

    label: str
    score: float
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {"label": self.label, "score": round(float(self.score), 6)}
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True)
class Example:
    """What an instrument reads: the reply or text, and the prompt it answered (refusal, harm)."""

    text: str
    prompt: str | None = None


class Instrument:
    """Base class of an instrument. Subclasses set the class attributes and ``classify``."""

    task: ClassVar[str] = ""
    name: ClassVar[str] = ""  # registry name, e.g. "refusal" (the offline default of a task is named as the task)
    labels: ClassVar[tuple[str, ...]] = ()
    positive: ClassVar[tuple[str, ...]] = ()  # labels that count as the positive class of "the rate"
    needs_prompt: ClassVar[bool] = False

    def classify(self, examples: list[Example]) -> list[Verdict]:
        raise NotImplementedError

    def is_positive(self, verdict: Verdict) -> bool:
        return verdict.label in self.positive

    @classmethod
    def card(cls) -> dict[str, Any] | None:
        """The validation figures shipped with the instrument (``cards/<name>.json``), or None.

        Keys every card has: ``task``, ``name``, ``version``, ``training_data`` (list of
        {source, licence, rows}), ``validation`` (list of {set, n, precision, recall, f1,
        ci95: {...}, by_group: {...}}), ``operating_point`` with ``sensitivity``,
        ``specificity``, ``n_pos``, ``n_neg`` (the pooled held-out counts the correction uses),
        ``calibration`` and ``failure_modes``.
        """
        path = CARD_DIR / f"{cls.name or cls.task}.json"
        if not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))


REGISTRY: Registry[type[Instrument]] = Registry("safety instrument", "tunelens.safety.instruments")


def register(cls: type[Instrument]) -> type[Instrument]:
    if cls.task not in TASKS:
        raise TypeError(f"instrument {cls.__name__} has task {cls.task!r}; tasks are {', '.join(TASKS)}")
    return REGISTRY.add(cls.name or cls.task, cls)


_CACHE: dict[tuple[str, str | None], Instrument] = {}


def get_instrument(task: str, *, judge: str | None = None, name: str | None = None, **options: Any) -> Instrument:
    """The offline instrument of ``task`` (cached), another registered instrument of that task by ``name``
    (e.g. ``refusal-lm``), or the LLM judge at ``judge`` (an OpenAI-compatible base URL) for the tasks that
    have one."""
    if task not in TASKS:
        raise TunelensError(f"unknown safety task {task!r}: choose one of {', '.join(TASKS)}")
    if judge:
        cls = REGISTRY.get("judge")
        return cls(task=task, base_url=judge, **options)  # type: ignore[call-arg]
    if name and name != task:
        names = sorted(n for n in REGISTRY.names() if n != "judge" and REGISTRY.get(n).task == task)
        if name not in names:
            raise TunelensError(f"no {task} instrument named {name!r}: the {task} instruments are {', '.join(names)}")
    name = name or task
    key = (name, None)
    if key not in _CACHE or options:
        inst = REGISTRY.get(name)(**options)
        if options:
            return inst
        _CACHE[key] = inst
    return _CACHE[key]
