"""One registry of plug-ins of one kind (curation steps, eval suites, attribution methods).

A plug-in is a module of the registry's package that calls :meth:`Registry.add` (through the
kind's ``register`` decorator) when imported. The package's modules are imported the first time
the registry is read (:meth:`Registry.load`), not when it is created, so importing one plug-in
module imports no other. A name (or alias) is taken by one entry only; an unknown name is an error
that lists the choices.

Ground floor: imports only the standard library and :mod:`tunelens.errors`.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from tunelens.errors import TunelensError

T = TypeVar("T")


def _qualified(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


class Registry(Generic[T]):
    """The entries of one kind, by name.

    ``kind`` is the human name ("curation step") used in messages; ``package`` the dotted name of
    the package whose modules register the entries. ``origin(entry)`` is the class or function an
    entry came from (named in the duplicate-name error; default: the entry itself) and ``order``
    the sort key of :meth:`entries` (default: the name).
    """

    def __init__(self, kind: str, package: str, *, origin: Callable[[T], Any] | None = None,
                 order: Callable[[T], Any] | None = None) -> None:
        self.kind = kind
        self.package = package
        self._origin = origin or (lambda entry: entry)
        self._order = order
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._lock = threading.RLock()
        self._loaded = False

    def add(self, name: str, entry: T, aliases: Iterable[str] = ()) -> T:
        """Register ``entry`` under ``name`` (and ``aliases``). A name already taken by another entry
        is a TypeError naming both; adding the same class or function again replaces it."""
        aliases = tuple(aliases)
        origin = self._origin(entry)
        with self._lock:
            for key in (name, *aliases):
                other_name = self._aliases.get(key, key)
                other = self._entries.get(other_name)
                if other is not None and self._origin(other) is not origin:
                    raise TypeError(f"two {self.kind}s are named {key!r}: {_qualified(self._origin(other))} "
                                    f"and {_qualified(origin)}")
                if key in aliases and key == name:
                    raise TypeError(f"{self.kind} {name!r} lists its own name as an alias")
            self._entries[name] = entry
            self._aliases.update({a: name for a in aliases})
        return entry

    def load(self) -> None:
        """Import every module of the package (once; modules named ``_*`` are left out)."""
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            package = importlib.import_module(self.package)
            for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{info.name}")
            self._loaded = True

    def get(self, name: str) -> T:
        """The entry registered as ``name`` (or an alias); unknown is a TunelensError listing the choices."""
        self.load()
        entry = self._entries.get(self._aliases.get(name, name))
        if entry is None:
            message = f"unknown {self.kind} {name!r}: choose one of {', '.join(self.names())}"
            if self._aliases:
                message += f" (or the aliases {', '.join(sorted(self._aliases))})"
            raise TunelensError(message)
        return entry

    def resolve(self, name: str) -> str:
        """The registered name of ``name`` (itself or the name it is an alias of); unknown is an error."""
        self.get(name)
        return self._aliases.get(name, name)

    def names(self) -> tuple[str, ...]:
        """Every registered name, sorted."""
        self.load()
        return tuple(sorted(self._entries))

    def aliases(self) -> dict[str, str]:
        """Alias -> name, sorted by alias."""
        self.load()
        return dict(sorted(self._aliases.items()))

    def entries(self, *, load: bool = True) -> list[T]:
        """Every entry, sorted by ``order`` (default: by name); ``load=False``: only those added so far."""
        if load:
            self.load()
        with self._lock:
            items = sorted(self._entries.items())
        if self._order is None:
            return [entry for _, entry in items]
        return sorted((entry for _, entry in items), key=self._order)

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._entries or name in self._aliases
