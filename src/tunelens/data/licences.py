"""Licence ids: SPDX checks and the allow/deny policy presets."""

from __future__ import annotations

import re

from tunelens.errors import ConfigError
from tunelens.records import UNKNOWN_LICENSE

_SPDX_LIKE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]*$")

# Licences whose terms forbid commercial use (fnmatch patterns, matched case-insensitively).
NON_COMMERCIAL = ["CC-BY-NC-*", "CC-BY-NC-SA-*", "CC-BY-NC-ND-*", "CC-NC-*"]


def check_license_id(value: str | None, where: str = "licence") -> str | None:
    """Return ``value`` if it looks like an SPDX id (or 'unknown'); raise ConfigError otherwise."""
    if value is None:
        return None
    if value == UNKNOWN_LICENSE or _SPDX_LIKE.match(value):
        return value
    suggestion = re.sub(r"[^A-Za-z0-9.+-]+", "-", value.strip()).strip("-")
    raise ConfigError(f"{where}: {value!r} is not an SPDX licence id (did you mean {suggestion!r}?)")


def hub_license_id(value: str) -> str:
    """The Hugging Face card form of an SPDX id (lower case, e.g. 'cc-by-nc-4.0')."""
    return value.lower()
