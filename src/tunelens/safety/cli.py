"""CLI for the built-in safety classifiers: `tunelens safety train-toxicity | score | ...`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tunelens.safety.injection_cli import register as _register_injection

app = typer.Typer(no_args_is_help=True)

_register_injection(app)


@app.command("train-toxicity")
def train_toxicity_cmd(
    data: Path = typer.Option(None, "--data", help="Davidson labelled CSV (default: DATA_DIR/davidson_hate_speech_offensive_labeled_data.csv)."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Data folder (default: TUNELENS_DATA_DIR or ../shared/data)."),
    output: Path = typer.Option(None, "--output", "-o", help="Where to write the joblib artifact (default: the one shipped in the package)."),
    test_size: float = typer.Option(0.2, "--test-size", min=0.05, max=0.5, help="Held-out fraction (stratified)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the train/held-out split."),
    max_word_features: int = typer.Option(20000, "--max-word-features", min=100, help="Cap on word n-gram vocabulary."),
    max_char_features: int = typer.Option(30000, "--max-char-features", min=100, help="Cap on char n-gram vocabulary."),
) -> None:
    """Train the toxicity classifier (TF-IDF + logistic regression) and report held-out F1 / ROC-AUC."""
    from tunelens.datafiles import data_file
    from tunelens.safety.toxicity import DAVIDSON_FILE, DEFAULT_ARTIFACT, train_toxicity

    console = Console()
    path = data or data_file(DAVIDSON_FILE, data_dir)
    out = output or DEFAULT_ARTIFACT
    with console.status(f"training toxicity classifier on {path.name}"):
        m = train_toxicity(path, out, test_size=test_size, seed=seed,
                           max_word_features=max_word_features, max_char_features=max_char_features)
    console.print(f"saved [bold]{out}[/] ({out.stat().st_size / 1e6:.1f} MB); {m['label_choice']}")
    table = Table(title=f"held-out split: {m['test_rows']} rows ({m['split']})")
    for col in ("F1", "precision", "recall", "ROC-AUC", "macro F1", "majority-class F1"):
        table.add_column(col)
    table.add_row(*(f"{m[k]:.4f}" for k in ("f1", "precision", "recall", "roc_auc", "macro_f1", "majority_baseline_f1")))
    console.print(table)


@app.command("score")
def score_cmd(
    texts: list[str] = typer.Argument(None, help="Texts to score; with none, reads one text per line from stdin."),
    backend: str = typer.Option("builtin", "--backend", help="Toxicity backend: builtin (offline) or detoxify."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
) -> None:
    """Score texts for toxicity and refusal."""
    from tunelens.errors import TunelensError
    from tunelens.safety.refusal import refusal_score
    from tunelens.safety.toxicity import load_scorer

    items = list(texts or []) or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not items:
        raise TunelensError("no text to score: pass texts as arguments or one per line on stdin")
    scorer = load_scorer(backend)
    tox = scorer.score(items)
    rows = [{"text": t, "toxicity": round(s, 4), "toxic": s >= scorer.threshold,
             "refusal_score": round(refusal_score(t), 4)} for t, s in zip(items, tox)]
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False))
        return
    table = Table()
    for col in ("text", "toxicity", "toxic", "refusal"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["text"][:80], f"{row['toxicity']:.3f}", str(row["toxic"]), f"{row['refusal_score']:.2f}")
    Console().print(table)
