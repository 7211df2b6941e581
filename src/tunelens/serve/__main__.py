"""`python -m tunelens.serve ...`: the serve command alone, without importing every stage's CLI."""

import sys

from rich.console import Console

from tunelens.errors import TunelensError
from tunelens.serve.cli import app

if __name__ == "__main__":
    try:
        app(prog_name="tunelens serve")
    except TunelensError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
