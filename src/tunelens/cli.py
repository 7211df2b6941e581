"""The `tunelens` command. Each stage contributes a typer sub-app from its own `cli` module."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from tunelens import __version__
from tunelens.errors import TunelensError

app = typer.Typer(
    name="tunelens",
    help="Instruction tuning you can see into: curate data, tune, evaluate, explain, serve, document.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tunelens {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the libraries' logging, warnings and progress bars "
                                 "(transformers, datasets, peft, accelerate: model loading, deprecations)."),
) -> None:
    """tunelens: data -> train -> evaluate -> explain -> serve, with provenance and cards."""
    from tunelens.progress import quiet_libraries

    quiet_libraries(verbose)


def _register() -> None:
    from tunelens.data.cli import app as data_app
    from tunelens.train.cli import register as register_train
    from tunelens.evaluate.cli import register as register_eval
    from tunelens.safety.cli import app as safety_app
    from tunelens.explain.cli import register as register_explain
    from tunelens.serve.cli import app as serve_app, feedback_app, monitor_app
    from tunelens.suite.cli import app as suite_app
    from tunelens.pipeline.cli import register as register_run
    from tunelens.export.cli import register as register_export

    app.add_typer(data_app, name="data", help="Import, curate and document instruction data.")
    register_train(app)
    register_eval(app)
    app.add_typer(safety_app, name="safety", help="Train and use the built-in safety classifiers.")
    register_explain(app)
    app.add_typer(serve_app, name="serve", help="Serve a model with guardrails (OpenAI-compatible API).")
    app.add_typer(feedback_app, name="feedback", help="Export user feedback as training data.")
    app.add_typer(monitor_app, name="monitor", help="Drift monitoring of live prompts.")
    app.add_typer(suite_app, name="suite", help="The built-in verifiable instruction suite.")
    register_run(app)
    register_export(app)


_register()


def entry() -> None:
    """The installed ``tunelens`` program: heavy commands first re-execute once under tcmalloc when
    it is installed (tunelens.allocator), then ``main``. Code that calls ``main()`` itself (tests,
    embedding) never re-executes its process."""
    from tunelens.allocator import maybe_reexec

    maybe_reexec()
    main()


def main() -> None:
    try:
        app()
    except TunelensError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
