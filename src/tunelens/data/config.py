"""CurateConfig: the inputs' settings, and one section per curation step, validated up front.

The step sections come from the step registry (tunelens.data.steps.config_sections): each step's
module defines its section's model, so a new step needs no change here.

Load from YAML with :meth:`CurateConfig.from_yaml` (the shared loader, tunelens.config_files);
unknown or misspelled fields fail with the field's path in the message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator
from pydantic_core import PydanticCustomError

from tunelens import config_files
from tunelens.data.licences import check_license_id
from tunelens.data.steps import config_sections
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


class _Inputs(_Strict):
    """CurateConfig less its step sections: how the inputs are read."""

    format: str | None = Field(None, description="Input format for every input (default: detected per file).")
    license: str | None = Field(None, description="SPDX licence of the inputs; without it records are 'unknown'.")
    source: str | None = Field(None, description="Source name (default: the file name).")
    column_map: dict[str, str] | None = Field(None, description="Canonical field -> source column.")
    on_error: Literal["reject", "fail"] = "reject"

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


def _section_fields() -> dict:
    """One field per step section, named by its YAML key (``validate`` is stored as ``validate_``:
    BaseModel has a ``validate`` of its own), defaulting to the section model's defaults."""
    fields = {}
    for key, model in config_sections().items():
        name = f"{key}_" if hasattr(BaseModel, key) else key
        fields[name] = (model, Field(default_factory=model, alias=key if name != key else None))
    return fields


CurateConfig = create_model("CurateConfig", __base__=_Inputs, __module__=__name__, **_section_fields())


def __getattr__(name: str):
    """The section models by class name (ValidateConfig, DedupConfig...), for code that imports them from here."""
    for model in config_sections().values():
        if model.__name__ == name:
            return model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

WHAT = "curate config"


def load(path: str | Path | None, overrides: dict | None = None) -> CurateConfig:
    """A YAML CurateConfig (optional) with dotted-key overrides on top (None: not given).

    Unknown fields keep pydantic's words ("Extra inputs are not permitted"), as this command always said."""
    return config_files.load_config(CurateConfig, path, overrides, what=WHAT, unknown=None)
