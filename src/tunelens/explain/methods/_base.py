"""The registry of attribution methods and its types (re-exported by ``tunelens.explain.methods``).

Method modules import ``register`` from here, not from the package, so the package (which finds
the modules) and the modules (which register into it) import in one direction only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tunelens.errors import TunelensError
from tunelens.registry import Registry

DEFAULT = "input_x_gradient"
_NO_DEFAULT = object()


@dataclass(frozen=True)
class Option:
    """One option a method accepts: its help text and, when it has one, its default.

    A default is applied when the caller leaves the option out and is recorded in
    ``Attribution.params``; an option without a default is passed and recorded only when given.
    ``recorded=False`` keeps an option (a progress callback) out of ``params``.
    """

    help: str
    default: Any = _NO_DEFAULT
    recorded: bool = True

    @property
    def has_default(self) -> bool:
        return self.default is not _NO_DEFAULT


@dataclass
class Computed:
    """What a method returns when a bare matrix is not enough."""

    matrix: Any
    segments: list[dict[str, Any]] = field(default_factory=list)  # occlusion: the deleted segments
    params: dict[str, Any] | None = None  # replaces the recorded options (e.g. spans as plain dicts)


@dataclass(frozen=True)
class Method:
    """A registered attribution method (see the module docstring)."""

    name: str
    summary: str
    compute: Callable[..., Any]
    options: Mapping[str, Option] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    def with_defaults(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The options to call ``compute`` with: defaults, then ``given``; an unknown option is an error."""
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            accepts = ", ".join(sorted(self.options)) or "no options"
            raise TunelensError(
                f"attribution method {self.name!r} does not take {', '.join(repr(u) for u in unknown)}; "
                f"it accepts {accepts}"
            )
        defaults = {k: o.default for k, o in self.options.items() if o.has_default}
        return {**defaults, **given}

    def recorded(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The options written into ``Attribution.params``."""
        return {k: v for k, v in options.items() if self.options[k].recorded}

    def label(self) -> str:
        return f"{self.name} ({', '.join(self.aliases)})" if self.aliases else self.name


REGISTRY: Registry[Method] = Registry("attribution method", "tunelens.explain.methods", origin=lambda m: m.compute)


def register(
    name: str, *, summary: str, options: Mapping[str, Option] | None = None, aliases: tuple[str, ...] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``compute`` as attribution method ``name``."""

    def wrap(compute: Callable[..., Any]) -> Callable[..., Any]:
        REGISTRY.add(name, Method(name, summary, compute, dict(options or {}), tuple(aliases)), aliases)
        return compute

    return wrap


def names() -> tuple[str, ...]:
    """The canonical method names, sorted (config validation and ``--help`` use this)."""
    return REGISTRY.names()


def aliases() -> dict[str, str]:
    """Alias -> canonical name."""
    return REGISTRY.aliases()


def choices() -> tuple[str, ...]:
    """Every accepted spelling: names, then aliases."""
    return names() + tuple(aliases())


def get(method: str) -> Method:
    """The method registered as ``method`` (a name or an alias); unknown names are an error listing the choices."""
    return REGISTRY.get(method)


def resolve(method: str) -> str:
    """The canonical name of ``method`` (a name or an alias); unknown names are an error."""
    return get(method).name


def accepting(option: str) -> tuple[str, ...]:
    """The methods that take ``option``."""
    return tuple(n for n in names() if option in get(n).options)


def help_text() -> str:
    """The ``--method`` help: every method with its aliases."""
    return "Attribution method: " + ", ".join(get(n).label() for n in names()) + f" (default {DEFAULT})."


def help_epilog() -> str:
    """One paragraph per method (summary and options), for a command's ``--help`` epilog."""
    paras = []
    for n in names():
        m = get(n)
        opts = ", ".join(f"{k}={o.default!r}" if o.has_default else k for k, o in m.options.items() if o.recorded)
        paras.append(f"{m.label()}: {m.summary}." + (f" attribute() options: {opts}." if opts else ""))
    return "Attribution methods:\n\n" + "\n\n".join(paras)


def describe() -> list[dict[str, Any]]:
    """Every method with its aliases, summary and options (help and default), for docs and tools."""
    return [
        {"name": m.name, "aliases": list(m.aliases), "summary": m.summary,
         "options": {k: {"help": o.help, **({"default": o.default} if o.has_default else {})} for k, o in m.options.items()}}
        for m in (get(n) for n in names())
    ]
