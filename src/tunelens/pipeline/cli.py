"""CLI for the main job: ``tunelens run [CONFIG.yaml]``, and ``tunelens card --run RUNDIR`` over a run's artifacts.

``card`` lives here, not in ``tunelens.cards``: it also rewrites the run's report.html, which is the
pipeline's, and the cards package stays below the pipeline (it imports nothing from it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from tunelens.errors import ConfigError


def _parse_set(items: list[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.max_steps=100")
        out[key.strip()] = yaml.safe_load(value)
    return out


def register(app: typer.Typer) -> None:
    """Add this stage's commands (run, card) to the root app."""
    _register_card(app)

    @app.command("run")
    def run_cmd(
        config: Optional[Path] = typer.Argument(None, help="Run config YAML (see configs/run/). Default: the embedded "
                                                "default (SmolLM2-135M-Instruct, built-in suite, LoRA, offline)."),
        tiny: bool = typer.Option(False, "--tiny", help="Tiny random model, small suite, few steps (CI and smoke tests)."),
        quick: bool = typer.Option(False, "--quick", help="The default model and suites with fewer steps and items "
                                   "(about 5 minutes on an idle 2-core CPU); its CIs are wide and the run says so."),
        fail_on_regression: bool = typer.Option(False, "--fail-on-regression", help="Exit with code 1 when a guard metric "
                                                "(evaluate.guards) regressed significantly (the run is REGRESSED)."),
        from_stage: Optional[str] = typer.Option(None, "--from", help="Force a restart from this stage: curate, train, "
                                                 "evaluate, explain or report."),
        run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Run directory (default: runs/<name>)."),
        name: Optional[str] = typer.Option(None, "--name", help="Run name (default: from the config, else 'default')."),
        commercial: bool = typer.Option(False, "--commercial", help="Curate under the commercial licence policy "
                                        "(rejects CC-BY-NC-* and unknown licences)."),
        limit: Optional[int] = typer.Option(None, "--limit", help="At most this many items per evaluation suite."),
        set_: list[str] = typer.Option([], "--set", help="Override a config field, e.g. --set train.max_steps=100 (repeatable)."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bars (stage headers and the summary still print)."),
    ) -> None:
        """Curate -> train -> evaluate (base vs tuned) -> explain -> cards and report.html, in one run dir.

        Finished stages are skipped on rerun (hash of inputs and config); Ctrl-C leaves a resumable run.
        """
        from tunelens.pipeline.config import load_run_config
        from tunelens.pipeline.presets import QUICK, TINY
        from tunelens.pipeline.runner import run_pipeline

        overrides: dict[str, Any] = {}
        if tiny and quick:
            raise ConfigError("--tiny and --quick are two presets: choose one")
        if quick:
            overrides.update(QUICK)
        if tiny:
            overrides.update(TINY)
            overrides.setdefault("name", "tiny")
        if name:
            overrides["name"] = name
        if run_dir:
            overrides["run_dir"] = str(run_dir)
        if commercial:
            overrides["data.commercial"] = True
        if limit is not None:
            overrides["evaluate.limit"] = limit
        overrides.update(_parse_set(set_))
        if (tiny or quick) and config is not None:
            overrides.pop("name", None)
        cfg = load_run_config(config, overrides)
        summary = run_pipeline(cfg, from_stage=from_stage, progress=not quiet)
        if fail_on_regression and (summary or {}).get("status") == "REGRESSED":
            from tunelens.pipeline.summary import status_line

            typer.echo(f"--fail-on-regression: {status_line(summary)}", err=True)
            raise typer.Exit(1)


def _register_card(app: typer.Typer) -> None:
    from rich.console import Console

    @app.command("card")
    def card_cmd(
        run: Path = typer.Option(..., "--run", help="Run directory written by `tunelens run` (e.g. runs/default)."),
        report: bool = typer.Option(True, "--report/--no-report", help="Also regenerate the run's report.html."),
    ) -> None:
        """Regenerate the model card and dataset card (and report.html) from a run's artifacts."""
        from tunelens.cards import regenerate
        from tunelens.pipeline.report import write_report

        console = Console()
        written = regenerate(run)
        if report:
            written["report"] = str(write_report(run).relative_to(run))
        for key, rel in written.items():
            console.print(f"[green]wrote[/] {key}: {run / rel}")
