"""Licence policy: allow-list / deny-list of SPDX ids, and the `commercial` preset."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Literal

from pydantic import Field

from tunelens.data.licences import NON_COMMERCIAL
from tunelens.data.steps.base import FilterStep, Reason, Record, SectionConfig, register
from tunelens.records import UNKNOWN_LICENSE


def _matches(value: str, patterns: list[str]) -> str | None:
    low = value.lower()
    return next((p for p in patterns if fnmatchcase(low, p.lower())), None)



class LicensePolicyConfig(SectionConfig):
    preset: Literal["commercial"] | None = Field(None, description="'commercial' rejects CC-BY-NC-* and unknown licences.")
    allow: list[str] | None = Field(None, description="If set, only these licences (fnmatch patterns) are kept.")
    deny: list[str] = Field(default_factory=list, description="Licences (fnmatch patterns) to reject.")
    allow_unknown: bool | None = Field(None, description="Keep records whose licence is 'unknown' (default: yes, unless a preset or allow-list is set).")

@register
class LicensePolicy(FilterStep):
    name = "license"
    order = 20
    config_key = "license_policy"
    config_model = LicensePolicyConfig
    count_reasons = False  # its stats are the licence mix of its input

    def __init__(self, config: LicensePolicyConfig) -> None:
        self.config = config
        self.deny = list(config.deny) + (NON_COMMERCIAL if config.preset == "commercial" else [])
        restrictive = config.preset is not None or config.allow is not None
        self.allow_unknown = config.allow_unknown if config.allow_unknown is not None else not restrictive

    @classmethod
    def from_config(cls, config, ctx):
        policy = cls(config)
        return policy if policy.active else None

    @property
    def active(self) -> bool:
        return bool(self.deny) or self.config.allow is not None or not self.allow_unknown

    @staticmethod
    def _licence(rec: Record) -> str:
        return rec["provenance"].get("license") or UNKNOWN_LICENSE

    def problem(self, rec: Record) -> Reason | None:
        licence = self._licence(rec)
        reason = self.reason(licence)
        return Reason(reason, {"license": licence}) if reason else None

    def extra_stats(self, records: list[Record]) -> dict:
        mix: dict[str, int] = {}
        for rec in records:
            licence = self._licence(rec)
            mix[licence] = mix.get(licence, 0) + 1
        return {"license_mix_in": dict(sorted(mix.items()))}

    def reason(self, licence: str) -> str | None:
        preset = f" ({self.config.preset} preset)" if self.config.preset else ""
        if licence == UNKNOWN_LICENSE:
            if self.allow_unknown:
                return None
            return f"licence unknown: the policy{preset} needs a known licence; pass --license if you know it"
        denied = _matches(licence, self.deny)
        if denied:
            return f"licence {licence} denied by {denied!r}{preset}"
        if self.config.allow is not None and not _matches(licence, self.config.allow):
            return f"licence {licence} not in the allow-list {self.config.allow}"
        return None
