"""Steps that change text in place and log before/after: normalisation and PII redaction."""

from __future__ import annotations

import re
import unicodedata

from pydantic import Field, field_validator

from tunelens.data.pii import DEFAULT_TYPES, PII_TYPES, redact_many
from tunelens.data.steps.base import Change, Record, SectionConfig, Step, StepResult, message_fields, register, set_field
from tunelens.progress import advance, track
from tunelens.records import normalise_text

PII_CHUNK = 2048  # texts per redact_many call

_BLANK_RUNS = re.compile(r"\n{3,}")
_INNER_SPACES = re.compile(r"(?<=\S)[ \t]{2,}")


_TRAILING_SPACE = re.compile(r"[^\S\n]\n")


def _already_normal(value: str) -> bool:
    """Fast path: True when normalise_text (and blank-line collapsing) would not change value."""
    return (
        unicodedata.is_normalized("NFC", value)
        and "\r" not in value
        and "\n\n\n" not in value
        and value == value.strip()
        and _TRAILING_SPACE.search(value) is None
    )



class NormaliseConfig(SectionConfig):
    enabled: bool = True
    collapse_blank_lines: bool = Field(True, description="Squeeze runs of blank lines into one.")
    collapse_spaces: bool = Field(False, description="Squeeze runs of spaces inside a line (indentation kept; off by default for code).")


class PiiConfig(SectionConfig):
    enabled: bool = True
    types: list[str] = Field(default_factory=lambda: list(DEFAULT_TYPES),
                             description=f"Subset of {list(PII_TYPES)} (default: all but PERSON).")

    @field_validator("types")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in PII_TYPES]
        if unknown:
            raise ValueError(f"unknown PII type(s) {unknown}; known: {list(PII_TYPES)}")
        return value

@register
class Normalise(Step):
    """Unicode NFC, unified newlines, trailing/outer whitespace (records.normalise_text)."""

    name = "normalise"
    order = 30
    config_key = "normalise"
    config_model = NormaliseConfig

    def __init__(self, config: NormaliseConfig) -> None:
        self.config = config

    def text(self, value: str) -> str:
        if _already_normal(value) and not (self.config.collapse_spaces and _INNER_SPACES.search(value)):
            return value
        value = normalise_text(value)
        if self.config.collapse_blank_lines:
            value = _BLANK_RUNS.sub("\n\n", value)
        if self.config.collapse_spaces:
            value = _INNER_SPACES.sub(" ", value)
        return value

    def run(self, records: list[Record]) -> StepResult:
        result = StepResult(kept=list(records))
        for rec in track(records, "records"):
            fields = []
            for path, before in message_fields(rec):
                after = self.text(before)
                if after != before:
                    set_field(rec, path, after)
                    fields.append({"field": path, "before": before, "after": after})
            if fields:
                result.changes.append(Change(rec["id"], fields))
        result.stats["changed_records"] = len(result.changes)
        return result


@register
class RedactPii(Step):
    """Typed placeholders for PII (see tunelens.data.pii), with counts by type."""

    name = "pii"
    order = 40
    config_key = "pii"
    config_model = PiiConfig

    def __init__(self, config: PiiConfig) -> None:
        self.types = list(config.types)

    def run(self, records: list[Record]) -> StepResult:
        result = StepResult(kept=list(records))
        totals: dict[str, int] = {}
        located = [(rec, path, text) for rec in records for path, text in message_fields(rec)]
        texts = [text for _, _, text in located]
        done: list[tuple[str, dict[str, int]]] = []
        for start in range(0, len(texts), PII_CHUNK):  # in chunks, for progress (same result: per text)
            done.extend(redact_many(texts[start:start + PII_CHUNK], self.types))
            advance("texts", len(done), len(texts))
        redacted = iter(done)
        for rec in records:
            fields, rec_counts = [], {}
            for path, before in message_fields(rec):
                after, counts = next(redacted)
                if counts:
                    set_field(rec, path, after)
                    fields.append({"field": path, "before": before, "after": after, "pii": counts})
                    for kind, n in counts.items():
                        rec_counts[kind] = rec_counts.get(kind, 0) + n
            if fields:
                result.changes.append(Change(rec["id"], fields, {"pii": rec_counts}))
                for kind, n in rec_counts.items():
                    totals[kind] = totals.get(kind, 0) + n
        result.stats["counts"] = dict(sorted(totals.items()))
        result.stats["changed_records"] = len(result.changes)
        return result
