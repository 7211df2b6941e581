"""The evaluation suites, one module each, found here rather than listed.

A suite is a class decorated with ``@register`` (see base). :func:`all_suites` imports every module
of this package and returns the registered suites by name, in order: the config's suite lists,
its validation and the ``--suite`` help are made from it, and the runner looks suites up in it. So
adding a suite is adding a module (and its test).
"""

from __future__ import annotations

from tunelens.evaluate.suites.base import REGISTRY, Item, Suite, SuiteContext, register, registered

__all__ = ["Item", "Suite", "SuiteContext", "all_suites", "register"]


def all_suites() -> dict[str, type[Suite]]:
    """Every registered suite by name, in order."""
    REGISTRY.load()
    return registered()
