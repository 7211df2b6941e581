"""`tunelens safety train-injection` (owned by the serving stage)."""

import typer


def register(app: typer.Typer) -> None:
    """Add the prompt-injection commands to the `safety` app."""
