"""`tunelens safety train-injection` (owned by the serving stage)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

_DEFAULT_DATA = Path("../shared/data")


def register(app: typer.Typer) -> None:
    """Add the prompt-injection commands to the `safety` app."""

    @app.command("train-injection")
    def train_injection_cmd(
        train: Path = typer.Option(_DEFAULT_DATA / "deepset_prompt_injections_train.jsonl", "--train",
                                   help="Training JSONL with {'text', 'label' (1 = injection)}."),
        test: Path = typer.Option(_DEFAULT_DATA / "deepset_prompt_injections_test.jsonl", "--test",
                                  help="Held-out JSONL for precision/recall (same fields)."),
        output: Path = typer.Option(None, "--output", "-o",
                                    help="Where to write the joblib artifact (default: the one shipped in the package)."),
        threshold: float = typer.Option(0.5, "--threshold", min=0.0, max=1.0,
                                        help="Score at or above which a text is flagged."),
    ) -> None:
        """Train the prompt-injection classifier (TF-IDF char+word n-grams + logistic regression)."""
        from tunelens.safety.injection import DEFAULT_ARTIFACT, train_injection

        console = Console()
        out = output or DEFAULT_ARTIFACT
        with console.status("training injection classifier"):
            report = train_injection(train, test, out, threshold=threshold)
        console.print(f"saved [bold]{out}[/] ({out.stat().st_size / 1024:.0f} KiB), trained on {report['train_rows']} rows")
        if "combined" in report:
            table = Table(title=f"test split ({report['test_rows']} rows, threshold {threshold})")
            for col in ("detector", "precision", "recall", "f1"):
                table.add_column(col)
            for name in ("classifier", "heuristics", "combined"):
                m = report[name]
                table.add_row(name, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}")
            console.print(table)
