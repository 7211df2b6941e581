"""Config files and their validation: the one loader and the one error formatter of every command.

``load_config(Model, path, overrides)`` reads a YAML mapping (or starts from ``default`` without a
file), applies dotted-key overrides (``train.max_steps``) and validates the result once with
``Model``. Every failure is a :class:`ConfigError` whose message names the file (or "options") and
the field's dotted path, formatted by :func:`format_validation_error`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from tunelens.errors import ConfigError

M = TypeVar("M")

UNKNOWN_FIELD = "unknown field (misspelled?)"


class Append(list):
    """An override value that extends the list already at its key instead of replacing it
    (``tunelens data curate --deny-license X`` adds X to the config file's deny list)."""


def load_yaml_mapping(path: str | Path, what: str = "config") -> dict[str, Any]:
    """The top-level mapping of a YAML file; ConfigError for a missing, unreadable or non-mapping file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: {what} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of {what} fields at the top level, got {type(data).__name__}")
    return data


def apply_overrides(values: dict[str, Any], overrides: Mapping[str, Any], where: str = "options",
                    skip_none: bool = True) -> bool:
    """Set each dotted ``key: value`` of ``overrides`` in ``values`` (in place), creating the
    mappings on the way; an :class:`Append` value extends the list there. ``None`` values are
    skipped with ``skip_none`` (a CLI option that was not given). Returns whether anything was set."""
    applied = False
    for key, value in overrides.items():
        if value is None and skip_none:
            continue
        node = values
        *heads, last = key.split(".")
        for head in heads:
            node = node.setdefault(head, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{where}: field {head!r} must be a mapping to set {key}")
        if isinstance(value, Append):
            old = node.get(last)
            if old is not None and not isinstance(old, list):
                raise ConfigError(f"{where}: field {key!r} must be a list to add {list(value)}")
            value = [*(old or []), *value]
        node[last] = value
        applied = True
    return applied


def format_validation_error(exc, what: str, where: str, prefix: str = "", unknown: str | None = UNKNOWN_FIELD) -> str:
    """The message for a pydantic ``ValidationError``: one line per error, ``WHERE: FIELD.PATH: problem``.

    ``what`` names the config ("run config"), ``where`` the file or "options", ``prefix`` is put
    before every field path (a section validated on its own). ``unknown`` replaces pydantic's
    "Extra inputs are not permitted" (None keeps pydantic's words: ``tunelens data curate`` says that).
    """
    lines = []
    for err in exc.errors():
        loc = prefix + ".".join(str(p) for p in err["loc"]) or "(config)"
        msg = unknown if unknown is not None and err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {where}: {loc}: {msg}")
    return f"invalid {what}:\n" + "\n".join(lines)


def validate(model: type[M], values: Any, what: str = "config", where: str = "options",
             unknown: str | None = UNKNOWN_FIELD) -> M:
    """``model.model_validate(values)``, with every failure a ConfigError naming ``where`` and the field."""
    from pydantic import ValidationError

    try:
        return model.model_validate(values)  # type: ignore[attr-defined]
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, what, where, unknown=unknown)) from None
    except ConfigError as exc:  # raised by a validator itself (e.g. a licence id that is not SPDX)
        raise ConfigError(f"invalid {what}:\n  {where}: {exc}") from None


def load_config(model: type[M], path: str | Path | None, overrides: Mapping[str, Any] | None = None, *,
                what: str = "config", default: Mapping[str, Any] | None = None, where: str | None = None,
                skip_none: bool = True, unknown: str | None = UNKNOWN_FIELD) -> M:
    """The YAML file at ``path`` (``default``, or nothing, without one) with dotted-key ``overrides``
    on top, validated once as ``model``. Errors name ``where`` (default: the file, "+ options" when
    an override was applied; "options" without a file) and the field."""
    values = load_yaml_mapping(path, what) if path is not None else copy.deepcopy(dict(default or {}))
    source = str(path) if path is not None else "options"
    if apply_overrides(values, overrides or {}, where or source, skip_none) and path is not None:
        source += " + options"
    return validate(model, values, what, where or source, unknown)
