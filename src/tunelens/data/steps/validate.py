"""Validation: schema (records.parse_record) plus the content rules the schema cannot express."""

from __future__ import annotations

from pydantic import Field, ValidationError

from tunelens.data.steps.base import FilterStep, Reason, Record, SectionConfig, register
from tunelens.records import ROLES, parse_record



class ValidateConfig(SectionConfig):
    enabled: bool = Field(True, description="Content rules; when off, the record schema is still checked.")
    max_field_chars: int = Field(32_000, gt=0, description="Longest allowed text field, in characters.")
    max_messages: int = Field(200, gt=0, description="Most messages allowed in one conversation.")
    require_assistant: bool = Field(True, description="Reject conversations without an assistant turn.")

@register
class Validate(FilterStep):
    """With ``enabled: false`` only the schema is checked (later steps need well-formed records);
    the content rules (empty turns, roles, UTF-8, lengths, assistant turn) are skipped."""

    name = "validate"
    order = 10
    config_key = "validate"
    config_model = ValidateConfig

    def __init__(self, config: ValidateConfig) -> None:
        self.config = config

    @classmethod
    def from_config(cls, config, ctx):
        return cls(config)  # always: disabled, it still checks the schema for the steps after it

    def problem(self, rec: Record) -> Reason | None:
        """The first thing wrong with a raw record dict, or None."""
        if not isinstance(rec, dict):
            return Reason(f"not an object: {type(rec).__name__}")
        if not self.config.enabled:
            return self._schema_problem(rec)
        kind = rec.get("kind", "conversation")
        turns_key = "prompt" if kind == "preference" else "messages"
        turns = rec.get(turns_key)
        # Content rules first: they give sharper reasons than the generic schema error.
        if isinstance(turns, list):
            if len(turns) > self.config.max_messages:
                return Reason(f"too many messages: {len(turns)} > {self.config.max_messages}", {"field": turns_key})
            for i, m in enumerate(turns):
                where = f"{turns_key}[{i}]"
                if not isinstance(m, dict):
                    return Reason(f"non-object message: {where} is {type(m).__name__}", {"field": where})
                role = m.get("role")
                if role not in ROLES:
                    return Reason(f"unknown role: {role!r} at {where}", {"field": f"{where}.role"})
                found = self._text_problem(m.get("content"), f"{where}.content")
                if found:
                    return found
        if kind == "preference":
            for name in ("chosen", "rejected"):
                found = self._text_problem(rec.get(name), name)
                if found:
                    return found
        found = self._schema_problem(rec)
        if found:
            return found
        if kind == "preference":
            if not turns or turns[-1]["role"] != "user":
                return Reason("prompt does not end with a user turn", {"field": "prompt"})
        elif self.config.require_assistant and not any(m["role"] == "assistant" for m in turns):
            return Reason("no assistant turn", {"field": "messages"})
        return None

    @staticmethod
    def _schema_problem(rec: Record) -> Reason | None:
        try:
            parse_record(rec)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            return Reason(f"schema: {loc}: {err['msg']}", {"field": loc})
        return None

    def _text_problem(self, value, where: str) -> Reason | None:
        if not isinstance(value, str):
            return Reason(f"non-string field: {where} is {type(value).__name__}", {"field": where})
        if not value.strip():
            return Reason(f"empty turn: {where} is empty or whitespace", {"field": where})
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return Reason(f"invalid UTF-8: {where} has an unpaired surrogate at character {exc.start}", {"field": where})
        if len(value) > self.config.max_field_chars:
            return Reason(f"over-long field: {where} has {len(value)} characters > {self.config.max_field_chars}", {"field": where})
        return None
