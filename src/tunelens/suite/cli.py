"""CLI for the suite: ``tunelens suite generate``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True)
console = Console()


@app.command("generate")
def generate_cmd(
    n: int = typer.Option(2000, "--n", help="Total number of records over the three splits (70/15/15)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same suite."),
    out: Path = typer.Option(..., "-o", "--out", help="Output directory for train/test/heldout.jsonl and summary.json."),
) -> None:
    """Generate the built-in verifiable instruction suite."""
    from tunelens.suite import FAMILIES, write_suite

    summary = write_suite(out, n, seed)
    table = Table(title=f"tunelens suite (n={n}, seed={seed}) -> {out}")
    table.add_column("family")
    table.add_column("category")
    for split in ("train", "test", "heldout"):
        table.add_column(split, justify="right")
    for name, fam in FAMILIES.items():
        table.add_row(name, fam.category, *(str(summary["families"][s].get(name, 0)) for s in ("train", "test", "heldout")))
    table.add_row("[bold]total[/]", "", *(f"[bold]{summary['counts'][s]}[/]" for s in ("train", "test", "heldout")))
    console.print(table)
