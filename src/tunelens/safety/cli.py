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
    data_dir: Path = typer.Option(None, "--data-dir", help="Data folder (default: TUNELENS_DATA_DIR or ../shared/data)."),
    output: Path = typer.Option(None, "--output", "-o", help="Where to write the joblib artifact (default: the one shipped in the package)."),
    card: Path = typer.Option(None, "--card", help="Where to write the card JSON (default: the shipped card when -o is not given, else next to -o)."),
    doc: Path = typer.Option(None, "--doc", help="Where to write the human-readable page (default: docs/instruments/toxicity.md when it exists)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the train/validation/held-out splits."),
) -> None:
    """Train the toxicity instrument on tweets, chat abuse, dialogue replies and assistant replies;
    write the artifact, its card and docs page, and print the held-out figures."""
    from tunelens.datafiles import default_data_dir
    from tunelens.safety.toxicity import DEFAULT_ARTIFACT
    from tunelens.safety.train_toxicity import CARD, DOC_NAME, train

    console = Console()
    out = output or DEFAULT_ARTIFACT
    card_path = card or (CARD if output is None else out.with_name(out.stem + "_card.json"))
    doc_path = doc or (Path("docs/instruments") / DOC_NAME if output is None and Path("docs/instruments").is_dir() else None)
    with console.status("training the toxicity instrument"):
        c = train(Path(data_dir) if data_dir else default_data_dir(), out, seed=seed, card_path=card_path, doc_path=doc_path)
    console.print(f"saved [bold]{out}[/] ({out.stat().st_size / 1e6:.1f} MB), card {card_path}, threshold {c['threshold']}")
    table = Table(title="held-out sets")
    for col in ("set", "n", "AUROC", "precision", "recall", "flagged"):
        table.add_column(col)
    for v in c["validation"]:
        table.add_row(v["set"], str(v["n"]), *(f"{v[k]:.3f}" if k in v else "-" for k in ("auroc", "precision", "recall", "flag_rate")))
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


_BIG_FILE = 500  # lines from which classify/redact show a progress bar with an ETA


def _progress(total: int):
    """A rich progress bar (with ETA) on stderr for big files; nothing for small ones."""
    from contextlib import nullcontext

    if total < _BIG_FILE:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=True)


def _finish(summary) -> None:
    typer.echo(summary.line())
    if summary.rejected:
        err = Console(stderr=True, highlight=False)
        for where in summary.first_rejects:
            err.print(where, markup=False)
        more = summary.rejected - len(summary.first_rejects)
        err.print(f"[yellow]{summary.rejected} line(s) rejected[/]{f' ({more} more not shown)' if more else ''}: "
                  f"{summary.rejects}")
        raise typer.Exit(1)


# The LLM judge's options, shared by `classify` and `validate`.
_JUDGE_MODEL = typer.Option(None, "--judge-model", help="Model name at the judge endpoint (default: the first it lists).")
_JUDGE_TIMEOUT = typer.Option(60.0, "--judge-timeout", min=1.0, help="Seconds per judge request.")
_JUDGE_CONCURRENCY = typer.Option(4, "--judge-concurrency", min=1, help="Judge requests in flight at once.")
_JUDGE_RETRIES = typer.Option(2, "--judge-retries", min=0, help="Retries of a failed judge request.")
_JUDGE_MAX_TOKENS = typer.Option(16, "--judge-max-tokens", min=1, help="Longest judge answer (raise it for reasoning models).")


def _judge_options(judge: str | None, model: str | None, timeout: float, concurrency: int, retries: int,
                   max_tokens: int) -> dict:
    if not judge:
        return {}
    return {"model": model, "timeout": timeout, "concurrency": concurrency, "retries": retries, "max_tokens": max_tokens}


@app.command("classify")
def classify_cmd(
    src: Path = typer.Argument(..., help="JSONL: one object a line with 'response' or 'text' (and 'prompt' for refusal and harm)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output JSONL: each line plus 'label' and 'score'."),
    task: str = typer.Option(..., "--task", help="refusal, harm, toxicity or injection."),
    judge: str = typer.Option(None, "--judge", help="OpenAI-compatible base URL of an LLM judge (refusal, harm) instead of the offline instrument."),
    judge_model: str = _JUDGE_MODEL,
    judge_timeout: float = _JUDGE_TIMEOUT,
    judge_concurrency: int = _JUDGE_CONCURRENCY,
    judge_retries: int = _JUDGE_RETRIES,
    judge_max_tokens: int = _JUDGE_MAX_TOKENS,
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Lines classified at once."),
    instrument: str = typer.Option(None, "--instrument", help="Another offline instrument of the task by name "
                                   "(refusal-lm: reads the request with SmolLM2; slower, see its card)."),
) -> None:
    """Label each line with a safety instrument (offline by default, or an LLM judge).

    Malformed lines go to OUT.rejects.jsonl with file:line and the reason; the exit code is 1 when
    any line was rejected. The API key of a judge comes from TUNELENS_JUDGE_API_KEY or OPENAI_API_KEY.
    """
    from tunelens.safety.batch import classify_file, count_lines

    options = _judge_options(judge, judge_model, judge_timeout, judge_concurrency, judge_retries, judge_max_tokens)
    total = count_lines(src) if src.is_file() else 0
    with _progress(total) as bar:
        job = bar.add_task(f"{task} {src.name}", total=total) if bar else None
        summary = classify_file(task, src, output, judge=judge, judge_options=options, batch_size=batch_size,
                                instrument_name=instrument, progress=(lambda n: bar.advance(job, n)) if bar else None)
    _finish(summary)


@app.command("validate")
def validate_cmd(
    task: str = typer.Option(..., "--task", help="refusal or harm."),
    output: Path = typer.Option(None, "--output", "-o", help="Write the card (JSON) here; its operating_point corrects rates."),
    judge: str = typer.Option(None, "--judge", help="OpenAI-compatible base URL of an LLM judge to validate instead of the offline instrument."),
    judge_model: str = _JUDGE_MODEL,
    judge_timeout: float = _JUDGE_TIMEOUT,
    judge_concurrency: int = _JUDGE_CONCURRENCY,
    judge_retries: int = _JUDGE_RETRIES,
    judge_max_tokens: int = _JUDGE_MAX_TOKENS,
    data_dir: Path = typer.Option(None, "--data-dir", help="Folder of the public data (default ../shared/data)."),
    limit: int = typer.Option(None, "--limit", min=1, help="Score only the first N test rows (a quick check; the card says n)."),
    instrument: str = typer.Option(None, "--instrument", help="Another offline instrument of the task by name (e.g. refusal-lm)."),
) -> None:
    """Measure an instrument (or an LLM judge) on the labelled test split and print its card.

    The test split is the half of the project's labelled replies that no offline instrument was
    trained on: SmolLM2 base and tuned, Anthropic HH, GPT-4 and CoCoNot replies. The card's
    operating_point is what the rate correction needs.
    """
    from tunelens.errors import TunelensError
    from tunelens.safety.instruments import get_instrument
    from tunelens.safety.validate import TASKS, rows_for, validate

    if task not in TASKS:
        raise typer.BadParameter(f"must be one of {', '.join(TASKS)}", param_hint="--task")
    options = _judge_options(judge, judge_model, judge_timeout, judge_concurrency, judge_retries, judge_max_tokens)
    try:
        inst = get_instrument(task, judge=judge, name=instrument, **options)
        rows = rows_for(task, data_dir, limit)
        with _progress(len(rows)) as bar:
            job = bar.add_task(f"validate {task}", total=len(rows)) if bar else None
            card = validate(task, inst, rows=rows, progress=(lambda n: bar.advance(job, n)) if bar else None)
    except TunelensError as exc:
        Console(stderr=True).print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    v = card["validation"][0]
    table = Table(title=f"{card['name']} on the labelled test split (n={v['n']}, {v['n_pos']} positive)")
    for col in ("group", "n", "positives", "precision", "recall", "F1"):
        table.add_column(col)
    for name, g in [("all", v), *v["by_group"].items()]:
        table.add_row(name, str(g["n"]), str(g["n_pos"]), f"{g['precision']:.3f}", f"{g['recall']:.3f}", f"{g['f1']:.3f}")
    Console().print(table)
    op = card["operating_point"]
    print(f"operating point: sensitivity {op['sensitivity']:.3f}, specificity {op['specificity']:.3f}; "
          f"F1 95% CI {v['ci95']['f1']}; {v['errored']} verdict(s) errored and left out; {card['wall_s']} s")
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {output}")


@app.command("redact")
def redact_cmd(
    src: Path = typer.Argument(..., help="JSONL: one object a line with a 'text' field."),
    output: Path = typer.Option(..., "--output", "-o", help="Output JSONL: each line plus 'redacted' and 'entities'."),
    types: str = typer.Option(None, "--types", help="Comma-separated PII types (default: all but PERSON); "
                                                    "SECRET, EMAIL, IBAN, CREDIT_CARD, SSN, IP, PHONE, ADDRESS, PERSON."),
) -> None:
    """Redact PII and secrets: 'text' -> 'redacted' plus 'entities' (type, start, end).

    Malformed lines go to OUT.rejects.jsonl with file:line and the reason; the exit code is 1 when
    any line was rejected.
    """
    from tunelens.safety.batch import count_lines, redact_file

    type_list = [t.strip().upper() for t in types.split(",") if t.strip()] if types else None
    total = count_lines(src) if src.is_file() else 0
    with _progress(total) as bar:
        job = bar.add_task(f"redact {src.name}", total=total) if bar else None
        summary = redact_file(src, output, types=type_list, progress=(lambda n: bar.advance(job, n)) if bar else None)
    _finish(summary)
