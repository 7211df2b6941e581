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

from tunelens.explain.methods._base import (
    DEFAULT,
    REGISTRY,
    Computed,
    Method,
    Option,
    accepting,
    aliases,
    choices,
    describe,
    get,
    help_epilog,
    help_text,
    names,
    register,
    resolve,
)

__all__ = [
    "DEFAULT", "REGISTRY", "Computed", "Method", "Option", "accepting", "aliases", "choices", "describe", "get",
    "help_epilog", "help_text", "names", "register", "resolve",
]
