"""Classify or redact a JSONL file line by line: the API under ``tunelens safety classify|redact``.

Every input line ends up in exactly one place: the output file (the same object plus the result)
or the rejects file (``OUT.rejects.jsonl``: ``{"line", "reason", "raw"}``), so nothing is dropped
silently. A line is rejected when it is not JSON, not an object, lacks its text field or has a
non-string one, lacks the prompt a task needs, or when the instrument gave no usable verdict for it
(an LLM judge that could not be parsed twice: its raw answer is kept in the reject).

Floor: ``safety``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelens.errors import TunelensError
from tunelens.safety.instruments._base import TASKS, Example, Instrument, get_instrument

PROMPT_TASKS = ("refusal", "harm")  # tasks whose verdict depends on the prompt the reply answered
Progress = Callable[[int], None]  # called with the number of lines just handled


@dataclass
class BatchSummary:
    input: str
    output: str
    rejects: str
    lines: int = 0
    written: int = 0
    rejected: int = 0
    labels: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    first_rejects: list[str] = field(default_factory=list)  # "IN.jsonl:3: reason", the first few

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def line(self) -> str:
        labels = ", ".join(f"{k} {v}" for k, v in sorted(self.labels.items()))
        text = f"{self.written} of {self.lines} lines written to {self.output}"
        if labels:
            text += f" ({labels})"
        if self.rejected:
            why = ", ".join(f"{v} {k}" for k, v in sorted(self.reasons.items()))
            text += f"; {self.rejected} rejected ({why}), see {self.rejects}"
        else:
            text += "; none rejected"
        return text


def rejects_path(out: Path) -> Path:
    """``OUT.rejects.jsonl`` beside ``OUT.jsonl`` (or ``OUT.rejects.jsonl`` for any other name)."""
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(f"{stem}.rejects.jsonl")


def count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """The non-blank lines of ``path`` with their numbers; a missing file is an error at once."""
    if not path.is_file():
        raise TunelensError(f"input not found: {path}")
    return _read_lines(path)


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for number, raw in enumerate(fh, start=1):
            if raw.strip():
                yield number, raw.rstrip("\n")


def _kind(value: Any) -> str:
    """'a number', 'a list', 'null': what a JSON value is, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {"list": "a list", "dict": "an object", "str": "a string"}.get(type(value).__name__, type(value).__name__)


def _parse(raw: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(obj, dict):
        return None, f"not a JSON object ({_kind(obj)})"
    return obj, None


class _Writer:
    def __init__(self, out: Path, summary: BatchSummary) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        self.summary = summary
        self.out = out.open("w", encoding="utf-8")
        self.rejects = rejects_path(out).open("w", encoding="utf-8")

    def write(self, obj: dict[str, Any]) -> None:
        self.out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.summary.written += 1

    def reject(self, src: Path, number: int, reason: str, raw: str, **extra: Any) -> None:
        row = {"line": number, "where": f"{src}:{number}", "reason": reason, "raw": raw, **extra}
        self.rejects.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.summary.rejected += 1
        if len(self.summary.first_rejects) < 5:
            self.summary.first_rejects.append(f"{src}:{number}: {reason}")
        key = reason.split(" (")[0].split(":")[0]
        self.summary.reasons[key] = self.summary.reasons.get(key, 0) + 1

    def close(self) -> None:
        self.out.close()
        self.rejects.close()


def _text_field(obj: dict[str, Any]) -> tuple[str | None, str | None]:
    for key in ("response", "text"):
        if key in obj:
            value = obj[key]
            if not isinstance(value, str):
                return None, f"field {key!r} is not a string ({_kind(value)})"
            return value, None
    return None, "no 'response' or 'text' field"


def classify_file(task: str, src: Path, out: Path, *, judge: str | None = None,
                  judge_options: dict[str, Any] | None = None, instrument: Instrument | None = None,
                  instrument_name: str | None = None, batch_size: int = 64,
                  progress: Progress | None = None) -> BatchSummary:
    """Classify each line of ``src`` (``prompt`` and ``response`` or ``text``) with the ``task``'s
    instrument (the offline default, or the LLM judge at ``judge``); write each line plus
    ``label`` and ``score`` to ``out`` and the lines that could not be classified to the rejects.
    ``instrument_name`` picks another registered instrument of the task (e.g. ``refusal-lm``)."""
    if task not in TASKS:
        raise TunelensError(f"unknown safety task {task!r}: choose one of {', '.join(TASKS)}")
    if batch_size < 1:
        raise TunelensError(f"batch size must be >= 1, got {batch_size}")
    src, out = Path(src), Path(out)
    lines = _lines(src)
    inst = instrument or get_instrument(task, judge=judge, name=instrument_name, **(judge_options or {}))
    needs_prompt = task in PROMPT_TASKS or inst.needs_prompt
    summary = BatchSummary(str(src), str(out), str(rejects_path(out)))
    writer = _Writer(out, summary)
    try:
        pending: list[tuple[int, str, dict[str, Any], Example]] = []

        def flush() -> None:
            if not pending:
                return
            verdicts = inst.classify([p[3] for p in pending])
            if len(verdicts) != len(pending):
                raise TunelensError(f"instrument {inst.name or task} returned {len(verdicts)} verdicts for "
                                    f"{len(pending)} examples")
            for (number, raw, obj, _), verdict in zip(pending, verdicts):
                score = float(verdict.score)
                if verdict.label not in inst.labels or not math.isfinite(score):
                    detail = dict(verdict.detail or {})
                    reason = str(detail.pop("error", f"no usable verdict (label {verdict.label!r})"))
                    writer.reject(src, number, f"instrument: {reason}", raw, **detail)
                    continue
                writer.write({**obj, "label": verdict.label, "score": round(score, 6)})
                summary.labels[verdict.label] = summary.labels.get(verdict.label, 0) + 1
            if progress:
                progress(len(pending))
            pending.clear()

        for number, raw in lines:
            summary.lines += 1
            obj, why = _parse(raw)
            if obj is not None:
                text, why = _text_field(obj)
            if obj is not None and why is None and needs_prompt:
                prompt = obj.get("prompt")
                if prompt is None:
                    why = f"no 'prompt' field (the {task} instrument reads the prompt the reply answered)"
                elif not isinstance(prompt, str):
                    why = f"field 'prompt' is not a string ({_kind(prompt)})"
            if why is not None or obj is None:
                writer.reject(src, number, why or "unreadable", raw)
                if progress:
                    progress(1)
                continue
            prompt = obj.get("prompt") if isinstance(obj.get("prompt"), str) else None
            pending.append((number, raw, obj, Example(text=text, prompt=prompt)))  # type: ignore[arg-type]
            if len(pending) >= batch_size:
                flush()
        flush()
    finally:
        writer.close()
    return summary


def redact_file(src: Path, out: Path, *, types: Iterable[str] | None = None,
                progress: Progress | None = None) -> BatchSummary:
    """Redact the ``text`` of each line of ``src``: write the line plus ``redacted`` and
    ``entities`` (``type``, ``start``, ``end`` in the original text) to ``out``."""
    from tunelens.safety.pii import redact_spans

    src, out = Path(src), Path(out)
    type_list = None if types is None else list(types)
    if type_list is not None:
        try:
            redact_spans("", type_list)
        except ValueError as exc:
            raise TunelensError(str(exc)) from None
    lines = _lines(src)
    summary = BatchSummary(str(src), str(out), str(rejects_path(out)))
    writer = _Writer(out, summary)
    try:
        for number, raw in lines:
            summary.lines += 1
            obj, why = _parse(raw)
            if obj is not None:
                if "text" not in obj:
                    why = "no 'text' field"
                elif not isinstance(obj["text"], str):
                    why = f"field 'text' is not a string ({_kind(obj['text'])})"
            if why is not None or obj is None:
                writer.reject(src, number, why or "unreadable", raw)
            else:
                redacted, entities = redact_spans(obj["text"], type_list)
                writer.write({**obj, "redacted": redacted, "entities": [e.to_dict() for e in entities]})
                for e in entities:
                    summary.labels[e.type] = summary.labels.get(e.type, 0) + 1
            if progress:
                progress(1)
    finally:
        writer.close()
    return summary
