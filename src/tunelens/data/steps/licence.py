"""Licence policy: allow-list / deny-list of SPDX ids, and the `commercial` preset."""

from __future__ import annotations

from fnmatch import fnmatchcase

from tunelens.data.config import LicensePolicyConfig
from tunelens.data.licences import NON_COMMERCIAL
from tunelens.data.steps.base import Record, Rejection, StepResult
from tunelens.records import UNKNOWN_LICENSE


def _matches(value: str, patterns: list[str]) -> str | None:
    low = value.lower()
    return next((p for p in patterns if fnmatchcase(low, p.lower())), None)


class LicensePolicy:
    name = "license"

    def __init__(self, config: LicensePolicyConfig) -> None:
        self.config = config
        self.deny = list(config.deny) + (NON_COMMERCIAL if config.preset == "commercial" else [])
        restrictive = config.preset is not None or config.allow is not None
        self.allow_unknown = config.allow_unknown if config.allow_unknown is not None else not restrictive

    @property
    def active(self) -> bool:
        return bool(self.deny) or self.config.allow is not None or not self.allow_unknown

    def run(self, records: list[Record]) -> StepResult:
        result = StepResult(kept=[])
        mix: dict[str, int] = {}
        for rec in records:
            licence = rec["provenance"].get("license") or UNKNOWN_LICENSE
            mix[licence] = mix.get(licence, 0) + 1
            reason = self.reason(licence)
            if reason:
                result.rejected.append(Rejection(rec, reason, {"license": licence}))
            else:
                result.kept.append(rec)
        result.stats["license_mix_in"] = dict(sorted(mix.items()))
        return result

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
