"""CLI for the pipeline stage."""

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root app."""
