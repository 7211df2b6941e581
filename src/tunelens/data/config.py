"""CurateConfig: every curation step, optional and configurable, validated up front.

Load from YAML with :meth:`CurateConfig.from_yaml` (the shared loader, tunelens.config_files);
unknown or misspelled fields fail with the field's path in the message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from tunelens import config_files
from tunelens.data.licences import check_license_id
from tunelens.data.pii import PII_TYPES
from tunelens.errors import ConfigError

# What the commercial licence policy (`tunelens data curate --commercial`, a run's data.commercial)
# sets, as dotted CurateConfig overrides: the one place that maps it.
COMMERCIAL: dict[str, str] = {"license_policy.preset": "commercial"}


def spdx_license(value: str | None) -> str | None:
    """A licence field's validator: ``value`` if it looks like an SPDX id, else a validation error
    (so the message names the field's whole path, e.g. ``data.license`` in a run config)."""
    try:
        return check_license_id(value, "license")
    except ConfigError as exc:
        raise PydanticCustomError("license", "{problem}", {"problem": str(exc).partition(": ")[2]}) from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ValidateConfig(_Strict):
    enabled: bool = Field(True, description="Content rules; when off, the record schema is still checked.")
    max_field_chars: int = Field(32_000, gt=0, description="Longest allowed text field, in characters.")
    max_messages: int = Field(200, gt=0, description="Most messages allowed in one conversation.")
    require_assistant: bool = Field(True, description="Reject conversations without an assistant turn.")


class NormaliseConfig(_Strict):
    enabled: bool = True
    collapse_blank_lines: bool = Field(True, description="Squeeze runs of blank lines into one.")
    collapse_spaces: bool = Field(False, description="Squeeze runs of spaces inside a line (indentation kept; off by default for code).")


class PiiConfig(_Strict):
    enabled: bool = True
    types: list[str] = Field(default_factory=lambda: list(PII_TYPES), description=f"Subset of {list(PII_TYPES)}.")

    @field_validator("types")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in PII_TYPES]
        if unknown:
            raise ValueError(f"unknown PII type(s) {unknown}; known: {list(PII_TYPES)}")
        return value


class DedupConfig(_Strict):
    exact: bool = Field(True, description="Drop records whose normalised text is identical to an earlier one.")
    near: bool = Field(True, description="Drop near-duplicates found with MinHash LSH.")
    threshold: float = Field(0.8, gt=0.0, le=1.0, description="Jaccard similarity above which records are near-duplicates.")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations.")
    ngram: int = Field(5, ge=1, le=32, description="Word n-gram (shingle) size.")
    near_fields: Literal["all", "prompt", "response"] = Field(
        "all", description="Text compared for near-duplicates: the whole record, only the prompt side, or only the replies.")


class QualityConfig(_Strict):
    enabled: bool = True
    min_response_chars: int = Field(1, ge=0, description="Shorter replies (after stripping) are rejected.")
    min_response_words: int = Field(0, ge=0, description="Replies with fewer words are rejected (0: off; emoji, Morse or ':-)' have no words).")
    max_repetition: float = Field(0.75, gt=0.0, le=1.0, description="Reject replies whose share of repeated word 3-grams is above this.")
    repetition_min_words: int = Field(30, ge=3, description="Only replies with at least this many words are checked for repetition.")
    boilerplate: bool = Field(True, description="Reject boilerplate non-answers ('As an AI language model...').")
    extra_boilerplate: list[str] = Field(default_factory=list, description="More regexes that mark a non-answer.")
    prompt_echo: float = Field(0.9, gt=0.0, le=1.0, description="Reject replies whose word-pair set has at least this Jaccard similarity with the prompt's.")


class DecontamFile(_Strict):
    path: Path
    fields: list[str] | None = Field(None, description="JSON fields holding eval text; default: detected (prompt, question, answer...).")


def _decontam_spec(value: str | Path) -> dict:
    """'path' or 'path::field1,field2' -> {path, fields}."""
    path, sep, fields = str(value).partition("::")
    return {"path": path, "fields": [f.strip() for f in fields.split(",") if f.strip()] or None} if sep else {"path": path}


class DecontaminateConfig(_Strict):
    files: list[DecontamFile] = Field(default_factory=list, description="Evaluation sets to check against.")
    n: int = Field(13, ge=3, le=64, description="Word n-gram size; a shared n-gram marks a record contaminated.")

    @field_validator("files", mode="before")
    @classmethod
    def _paths(cls, value):
        return [_decontam_spec(v) if isinstance(v, (str, Path)) else v for v in value or []]


class LicensePolicyConfig(_Strict):
    preset: Literal["commercial"] | None = Field(None, description="'commercial' rejects CC-BY-NC-* and unknown licences.")
    allow: list[str] | None = Field(None, description="If set, only these licences (fnmatch patterns) are kept.")
    deny: list[str] = Field(default_factory=list, description="Licences (fnmatch patterns) to reject.")
    allow_unknown: bool | None = Field(None, description="Keep records whose licence is 'unknown' (default: yes, unless a preset or allow-list is set).")


class ToxicityConfig(_Strict):
    enabled: bool = False
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Reject records whose toxicity probability is at least this.")
    scorer: str = Field("builtin", description="'builtin' (tunelens.safety.toxicity) or 'module:function' returning a scorer.")
    fields: Literal["responses", "all"] = Field("responses", description="Score only the replies, or every turn.")
    batch_size: int = Field(64, gt=0)


class CurateConfig(_Strict):
    format: str | None = Field(None, description="Input format for every input (default: detected per file).")
    license: str | None = Field(None, description="SPDX licence of the inputs; without it records are 'unknown'.")
    source: str | None = Field(None, description="Source name (default: the file name).")
    column_map: dict[str, str] | None = Field(None, description="Canonical field -> source column.")
    on_error: Literal["reject", "fail"] = "reject"
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")
    normalise: NormaliseConfig = Field(default_factory=NormaliseConfig)
    pii: PiiConfig = Field(default_factory=PiiConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    decontaminate: DecontaminateConfig = Field(default_factory=DecontaminateConfig)
    license_policy: LicensePolicyConfig = Field(default_factory=LicensePolicyConfig)
    toxicity: ToxicityConfig = Field(default_factory=ToxicityConfig)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("license")
    @classmethod
    def _spdx(cls, value):
        return spdx_license(value)

    @model_validator(mode="after")
    def _format_known(self):
        from tunelens.data.importers import FORMATS

        if self.format is not None and self.format not in FORMATS:
            raise ValueError(f"format {self.format!r} is not one of {', '.join(FORMATS)}")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> CurateConfig:
        return load(path)

    @classmethod
    def from_dict(cls, data: dict, where: str = "config") -> CurateConfig:
        return config_files.validate(cls, data, WHAT, where, unknown=None)


WHAT = "curate config"


def load(path: str | Path | None, overrides: dict | None = None) -> CurateConfig:
    """A YAML CurateConfig (optional) with dotted-key overrides on top (None: not given).

    Unknown fields keep pydantic's words ("Extra inputs are not permitted"), as this command always said."""
    return config_files.load_config(CurateConfig, path, overrides, what=WHAT, unknown=None)
