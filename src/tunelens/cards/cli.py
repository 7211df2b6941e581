"""CLI for the cards: ``tunelens card --run RUNDIR``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root app."""

    @app.command("card")
    def card_cmd(
        run: Path = typer.Option(..., "--run", help="Run directory written by `tunelens run` (e.g. runs/default)."),
        report: bool = typer.Option(True, "--report/--no-report", help="Also regenerate the run's report.html."),
    ) -> None:
        """Regenerate the model card and dataset card (and report.html) from a run's artifacts."""
        from tunelens.cards import regenerate

        written = regenerate(run)
        if report:
            from tunelens.pipeline.report import write_report

            written["report"] = str(write_report(run).relative_to(run))
        for key, rel in written.items():
            console.print(f"[green]wrote[/] {key}: {run / rel}")
