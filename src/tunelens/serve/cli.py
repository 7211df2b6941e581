"""CLI for serving, feedback export and drift monitoring."""

import typer

app = typer.Typer(no_args_is_help=True)
feedback_app = typer.Typer(no_args_is_help=True)
monitor_app = typer.Typer(no_args_is_help=True)
