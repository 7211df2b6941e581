"""Token-attribution methods: the one list.

Each module in this package registers one method with ``@register``: its name, aliases, a
one-line summary (used by ``--help`` and error messages), the options it accepts (with their
defaults and help) and the function that computes its matrix. ``attribute()`` dispatches
through this registry, and the CLI help, the option checks and config validation
(``names()`` / ``resolve()``) are generated from it. Adding a method means adding one module
here (``methods/<name>.py``) plus its test; nothing else lists the methods.

The modules are found when the registry is first read (``pkgutil`` over this package), so
importing ``tunelens.explain.methods`` stays cheap and imports no method, torch or model code.

A method's function is called as ``compute(model, tokenizer, enc, **options)`` with ``enc`` the
``tunelens.explain.encoding.Encoding`` of prompt and response and ``options`` the caller's
options over the defaults. It returns the (response tokens x prompt tokens) matrix, or a
``Computed`` when it also reports segments or records its parameters differently.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tunelens.errors import TunelensError

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


_REGISTRY: dict[str, Method] = {}
_ALIASES: dict[str, str] = {}
_lock = threading.Lock()
_loaded = False


def register(
    name: str, *, summary: str, options: Mapping[str, Option] | None = None, aliases: tuple[str, ...] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``compute`` as attribution method ``name``."""

    def wrap(compute: Callable[..., Any]) -> Callable[..., Any]:
        taken = [key for key in (name, *aliases) if key in _REGISTRY or key in _ALIASES]
        if taken:
            raise RuntimeError(f"attribution method {name!r}: the name(s) {taken} are already registered")
        method = Method(name, summary, compute, dict(options or {}), tuple(aliases))
        _REGISTRY[name] = method
        _ALIASES.update({a: name for a in aliases})
        return compute

    return wrap


def _load() -> None:
    global _loaded
    if _loaded:
        return
    with _lock:
        if not _loaded:
            for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{__name__}.{info.name}")
            _loaded = True


def names() -> tuple[str, ...]:
    """The canonical method names, sorted (config validation and ``--help`` use this)."""
    _load()
    return tuple(sorted(_REGISTRY))


def aliases() -> dict[str, str]:
    """Alias -> canonical name."""
    _load()
    return dict(sorted(_ALIASES.items()))


def choices() -> tuple[str, ...]:
    """Every accepted spelling: names, then aliases."""
    return names() + tuple(aliases())


def get(method: str) -> Method:
    """The method registered as ``method`` (a name or an alias); unknown names are an error listing the choices."""
    _load()
    name = _ALIASES.get(method, method)
    if name not in _REGISTRY:
        raise TunelensError(
            f"unknown attribution method {method!r}: choose one of {', '.join(names())} "
            f"(or the aliases {', '.join(aliases())})"
        )
    return _REGISTRY[name]


def resolve(method: str) -> str:
    """The canonical name of ``method`` (a name or an alias); unknown names are an error."""
    return get(method).name


def accepting(option: str) -> tuple[str, ...]:
    """The methods that take ``option``."""
    return tuple(n for n in names() if option in _REGISTRY[n].options)


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
