"""CLI for the built-in safety classifiers."""

import typer

from tunelens.safety.injection_cli import register as _register_injection

app = typer.Typer(no_args_is_help=True)

_register_injection(app)
