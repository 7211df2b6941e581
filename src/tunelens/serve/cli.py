"""CLI for serving, feedback export and drift monitoring."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=False, invoke_without_command=True)
keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys (stored hashed).")
app.add_typer(keys_app, name="keys")
feedback_app = typer.Typer(no_args_is_help=True)
monitor_app = typer.Typer(no_args_is_help=True)
console = Console()

_DB_HELP = "SQLAlchemy database URL (default: the config's db_url, else sqlite:///tunelens-serve.db)."


def _db_url(db: str | None, config: Path | None) -> str:
    if db:
        return db
    if config is not None:
        from tunelens.config_files import load_yaml_mapping

        data = load_yaml_mapping(config, "serve config")
        if data.get("db_url"):
            return data["db_url"]
    return "sqlite:///tunelens-serve.db"


def _existing_store(url: str):
    """A Store for commands that read: a missing SQLite file is a typo, not a new empty database."""
    from pathlib import Path as _Path

    from tunelens.errors import TunelensError
    from tunelens.serve.db import Store

    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = _Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise TunelensError(f"database not found: {path} (from {url}); pass --db with the server's URL")
    return Store(url)


@app.callback()
def serve(
    ctx: typer.Context,
    model: list[str] = typer.Option(None, "--model", "-m",
                                    help="Model to serve: DIR, adapter dir, .gguf, hub id, or NAME=PATH. Repeat for A/B."),
    config: Path = typer.Option(None, "--config", "-c", help="ServeConfig YAML (models, db, limits, guardrails...)."),
    host: str = typer.Option(None, "--host", help="Bind address (default 127.0.0.1)."),
    port: int = typer.Option(None, "--port", help="Port (default 8000; 0 picks a free one)."),
    db: str = typer.Option(None, "--db", help=_DB_HELP),
    backend: str = typer.Option(None, "--backend", help="Generation backend: hf (default; streams token by token), "
                                "llamacpp (llama.cpp on the model's GGUF export), vllm (CUDA), auto."),
    quant: str = typer.Option(None, "--quant", help="GGUF quantisation for --backend llamacpp (f32, f16, q8_0 (default), "
                                "q4_k_m, auto)."),
) -> None:
    """Serve models with guardrails: OpenAI-compatible API, feedback, A/B page and drift monitor."""
    if ctx.invoked_subcommand is not None:
        return
    from tunelens.errors import ConfigError
    from tunelens.serve.config import load_config, parse_model_option

    if not model and config is None:
        raise ConfigError("give --model DIR (repeatable) or --config serve.yaml")
    cfg = load_config(config, models=parse_model_option(model) if model else None, host=host, port=port, db_url=db,
                      **{"batching.backend": backend, "batching.quant": quant})
    run_server(cfg)


def run_server(cfg) -> None:
    import uvicorn

    from tunelens.models import load_model
    from tunelens.serve.app import create_app

    # Load before uvicorn starts, so a bad model path is a one-line CLI error, not a lifespan traceback.
    preloaded = {}
    for entry in cfg.models:
        with console.status(f"loading {entry.name} ({entry.path})"):
            preloaded[entry.name] = load_model(entry.path)
    app = create_app(cfg, preloaded=preloaded)
    console.print(f"serving {', '.join(m.name for m in cfg.models)} on http://{cfg.host}:{cfg.port} "
                  f"(db {cfg.db_url}); UI at /, A/B at /ab")
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="info")


@keys_app.command("create")
def keys_create(name: str = typer.Option("default", "--name", help="A label for the key (who or what uses it)."),
                role: str = typer.Option("user", "--role", help="user: feedback and A/B judgments only on its own "
                                         "exchanges; admin: on any key's."),
                db: str = typer.Option(None, "--db", help=_DB_HELP),
                config: Path = typer.Option(None, "--config", "-c", help="ServeConfig YAML to read db_url from.")) -> None:
    """Create a key and print it once (only its salted hash is stored)."""
    from tunelens.serve.db import ROLES, Store
    from tunelens.serve.keys import create_key

    if role not in ROLES:
        raise typer.BadParameter(f"{role!r} is not a role; choose one of {', '.join(ROLES)}", param_hint="--role")
    key = create_key(Store(_db_url(db, config)), name, role=role)
    console.print(f"created {key.role} key [bold]{key.id}[/] ({key.name}); store it now, it is not shown again:")
    typer.echo(key.key)


@keys_app.command("list")
def keys_list(db: str = typer.Option(None, "--db", help=_DB_HELP),
              config: Path = typer.Option(None, "--config", "-c", help="ServeConfig YAML to read db_url from.")) -> None:
    """List keys (ids, names, status; never the secrets)."""
    from tunelens.serve.keys import list_keys

    table = Table("id", "name", "role", "created", "status")
    for k in list_keys(_existing_store(_db_url(db, config))):
        table.add_row(k.id, k.name, k.role, k.created_at.isoformat(timespec="seconds"),
                      f"revoked {k.revoked_at.isoformat(timespec='seconds')}" if k.revoked_at else "active")
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key id shown by `keys list` (the part after 'tl_')."),
                db: str = typer.Option(None, "--db", help=_DB_HELP),
                config: Path = typer.Option(None, "--config", "-c", help="ServeConfig YAML to read db_url from.")) -> None:
    """Revoke a key: it gets 401 from then on."""
    from tunelens.serve.keys import revoke_key

    row = revoke_key(_existing_store(_db_url(db, config)), key_id)
    console.print(f"revoked {row.id} ({row.name})")


@feedback_app.command("export")
def feedback_export(
    output: Path = typer.Option(..., "--output", "-o", help="Preference pairs JSONL (for `tunelens train --method dpo`)."),
    sft_output: Path = typer.Option(None, "--sft-output", help="SFT records for corrections (default: <output>.sft.jsonl)."),
    skipped_output: Path = typer.Option(None, "--skipped-output",
                                        help="Feedback not exported, with reasons (default: <output>.skipped.jsonl)."),
    db: str = typer.Option(None, "--db", help=_DB_HELP),
    config: Path = typer.Option(None, "--config", "-c", help="ServeConfig YAML (db_url and licence)."),
    license: str = typer.Option(None, "--license",
                                help="SPDX licence written into provenance (default: the config's, else 'unknown')."),
) -> None:
    """Turn feedback into preference pairs (DPO) and SFT records, provenance source=feedback."""
    from tunelens.serve.export import export_feedback

    lic = license
    if lic is None and config is not None:
        from tunelens.serve.config import load_config

        lic = load_config(config).license
    summary = export_feedback(_existing_store(_db_url(db, config)), output, sft_output, skipped_output, license=lic or "unknown")
    console.print(f"{summary.feedback_rows} feedback rows: [bold]{summary.preferences} preference pairs[/], "
                  f"[bold]{summary.sft} SFT records[/], {summary.skipped} skipped")
    for kind, path in summary.paths.items():
        console.print(f"  {kind}: {path}", soft_wrap=True)


@monitor_app.command("report")
def monitor_report(
    train: list[Path] = typer.Option(..., "--train", help="Training records JSONL (the reference); repeatable."),
    output: Path = typer.Option(Path("drift-report.html"), "--output", "-o", help="HTML report with plots."),
    db: str = typer.Option(None, "--db", help=_DB_HELP),
    config: Path = typer.Option(None, "--config", "-c", help="ServeConfig YAML (db_url and drift thresholds)."),
    window: int = typer.Option(None, "--window", help="Most recent live prompts compared (default: config's, 500)."),
    min_samples: int = typer.Option(None, "--min-samples", min=5,
                                    help="Fewest live prompts for a verdict (default: config's, 30)."),
) -> None:
    """Compare live prompts with the training data (PSI per feature, embedding MMD) and write an HTML report."""
    import json

    from tunelens.serve.config import DriftConfig, load_config
    from tunelens.serve.drift import DriftMonitor, live_prompts

    cfg = load_config(config).drift if config is not None else DriftConfig()
    updates = {k: v for k, v in (("window", window), ("min_samples", min_samples)) if v is not None}
    cfg = cfg.model_copy(update=updates)
    with console.status("fitting the reference and scoring live prompts"):
        monitor = DriftMonitor.from_records(list(train))
        prompts = live_prompts(_existing_store(_db_url(db, config)), cfg.window)
        html, rep = monitor.html_report(prompts, cfg)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(html, encoding="utf-8")
    verdict = {True: "[red]DRIFT[/]", False: "[green]no drift[/]", None: "[yellow]not enough data[/]"}[rep["drifted"]]
    console.print(f"{verdict}: {len(prompts)} live prompts vs {rep['n_reference']} training prompts -> {output}")
    console.print_json(json.dumps({k: rep[k] for k in ("psi", "mmd", "reasons") if k in rep}))
