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
        benign: list[Path] = typer.Option(
            [_DEFAULT_DATA / "self_instruct_seed_tasks.jsonl", _DEFAULT_DATA / "ifeval_input_data.jsonl",
             _DEFAULT_DATA / "gsm8k_train.jsonl"], "--benign",
            help="Extra benign instruction files added as negatives (repeatable; self-instruct, IFEval, GSM8K)."),
        benign_limit: int = typer.Option(600, "--benign-limit", min=1, help="Most rows taken from each benign file."),
        fp_check: Path = typer.Option(_DEFAULT_DATA / "alpaca_data.json", "--fp-check",
                                      help="Alpaca JSON whose last 1000 instructions measure the false-positive rate "
                                           "(evaluation only, never trained on)."),
    ) -> None:
        """Train the prompt-injection classifier (TF-IDF char+word n-grams + logistic regression)."""
        from tunelens.safety.injection import DEFAULT_ARTIFACT, train_injection

        console = Console()
        out = output or DEFAULT_ARTIFACT
        with console.status("training injection classifier"):
            report = train_injection(train, test, out, threshold=threshold, benign=benign,
                                     benign_limit=benign_limit, fp_check=fp_check if fp_check.is_file() else None)
        console.print(f"saved [bold]{out}[/] ({out.stat().st_size / 1024:.0f} KiB), trained on {report['train_rows']} rows")
        if "combined" in report:
            table = Table(title=f"test split ({report['test_rows']} rows, threshold {threshold})")
            for col in ("detector", "precision", "recall", "f1"):
                table.add_column(col)
            for name in ("classifier", "heuristics", "combined"):
                m = report[name]
                table.add_row(name, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}")
            console.print(table)
        if "benign_false_positive_rate" in report:
            fp = report["benign_false_positive_rate"]
            console.print(f"false-positive rate on {fp['rows']} held-out {fp['file']} instructions: {fp['rate']:.3f}")
