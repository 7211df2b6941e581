"""`tunelens safety train-injection`: the injection instrument, or a detector on your own labelled data."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table


def register(app: typer.Typer) -> None:
    """Add the prompt-injection commands to the `safety` app."""

    @app.command("train-injection")
    def train_injection_cmd(
        data_dir: Path = typer.Option(None, "--data-dir", help="Data folder (default: TUNELENS_DATA_DIR or ../shared/data)."),
        output: Path = typer.Option(None, "--output", "-o",
                                    help="Where to write the joblib artifact (default: the one shipped in the package)."),
        threshold: float = typer.Option(None, "--threshold", min=0.0, max=1.0,
                                        help="Score at or above which a text is flagged (default: chosen on validation data; "
                                             "0.5 with --train)."),
        card: Path = typer.Option(None, "--card", help="Where to write the card JSON (default: the shipped card when -o "
                                                       "is not given, else next to -o)."),
        doc: Path = typer.Option(None, "--doc", help="Where to write the human-readable page (default: "
                                                     "docs/instruments/injection.md when it exists)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the splits."),
        train: Path = typer.Option(None, "--train", help="Train on your own JSONL {'text', 'label' (1 = injection)} "
                                                         "instead of the instrument's sources."),
        test: Path = typer.Option(None, "--test", help="With --train: held-out JSONL for precision/recall (same fields)."),
        benign: list[Path] = typer.Option([], "--benign", help="With --train: benign instruction files added as "
                                                               "negatives (self-instruct, IFEval, GSM8K; repeatable)."),
        benign_limit: int = typer.Option(600, "--benign-limit", min=1, help="With --train: most rows from each benign file."),
        fp_check: Path = typer.Option(None, "--fp-check", help="With --train: Alpaca JSON whose last 1000 instructions "
                                                               "measure the false-positive rate (evaluation only)."),
    ) -> None:
        """Train the prompt-injection instrument (views + TF-IDF/LR + phrase rules) and print held-out figures."""
        console = Console()
        if train is not None:
            from tunelens.safety.injection import DEFAULT_ARTIFACT, train_injection

            out = output or DEFAULT_ARTIFACT
            with console.status("training injection classifier"):
                report = train_injection(train, test, out, threshold=0.5 if threshold is None else threshold,
                                         benign=benign, benign_limit=benign_limit,
                                         fp_check=fp_check if fp_check and fp_check.is_file() else None)
            console.print(f"saved [bold]{out}[/] ({out.stat().st_size / 1024:.0f} KiB), trained on {report['train_rows']} rows")
            if "combined" in report:
                table = Table(title=f"test split ({report['test_rows']} rows, threshold {report['threshold']})")
                for col in ("detector", "precision", "recall", "f1"):
                    table.add_column(col)
                for name in ("classifier", "heuristics", "combined"):
                    m = report[name]
                    table.add_row(name, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}")
                console.print(table)
            if "benign_false_positive_rate" in report:
                fp = report["benign_false_positive_rate"]
                console.print(f"false-positive rate on {fp['rows']} held-out {fp['file']} instructions: {fp['rate']:.3f}")
            return
        from tunelens.datafiles import default_data_dir
        from tunelens.safety.injection import DEFAULT_ARTIFACT
        from tunelens.safety.train_injection import CARD, DOC_NAME
        from tunelens.safety.train_injection import train as train_instrument

        out = output or DEFAULT_ARTIFACT
        card_path = card or (CARD if output is None else out.with_name(out.stem + "_card.json"))
        doc_path = doc or (Path("docs/instruments") / DOC_NAME if output is None and Path("docs/instruments").is_dir() else None)
        with console.status("training the injection instrument"):
            c = train_instrument(Path(data_dir) if data_dir else default_data_dir(), out, seed=seed, card_path=card_path,
                                 doc_path=doc_path, threshold=threshold)
        console.print(f"saved [bold]{out}[/] ({out.stat().st_size / 1024:.0f} KiB), card {card_path}, threshold {c['threshold']}")
        table = Table(title="held-out groups")
        for col in ("group", "n", "measures", "rate", "95% CI"):
            table.add_column(col)
        for g, f in c["by_group"].items():
            table.add_row(g, str(f["n"]), f["measures"], f"{f['rate']:.3f}", str(f["ci95"]))
        console.print(table)
