"""CLI for the data stage: `tunelens data import` and `tunelens data curate`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tunelens.errors import ConfigError

app = typer.Typer(no_args_is_help=True, help="Import, curate and document instruction data.")
console = Console(stderr=True)

FORMAT_HELP = "Input format: records, alpaca, sharegpt, openai, gsm8k, hh-rlhf, preference or generic (default: detected from the columns)."
COLUMN_MAP_HELP = "Column mapping FIELD=COLUMN,... e.g. prompt=question,response=answer (fields: prompt, response, system, chosen, rejected, or a format's own field names)."


@app.command("import")
def import_cmd(
    source: str = typer.Argument(..., help="Input file (.json, .jsonl, .csv, .tsv, .parquet, optionally .gz) or hf:org/name[:split]."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the canonical records JSONL."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
    license: Optional[str] = typer.Option(None, "--license", help="SPDX licence id of the data (e.g. CC-BY-NC-4.0); without it records are 'unknown'."),
    source_name: Optional[str] = typer.Option(None, "--source", help="Source name recorded in provenance (default: the file name)."),
    column_map: Optional[str] = typer.Option(None, "--column-map", help=COLUMN_MAP_HELP),
    on_error: str = typer.Option("reject", "--on-error", help="reject: write malformed rows to the rejects file and go on; fail: stop at the first one."),
    rejects: Optional[Path] = typer.Option(None, "--rejects", help="Where malformed rows go (default: OUTPUT with .rejects.jsonl)."),
) -> None:
    """Convert a file or hub dataset to canonical tunelens records (no curation)."""
    from tunelens.data.curate import check_input
    from tunelens.data.importers import load_records, parse_column_map
    from tunelens.records import write_jsonl

    check_input(source)
    result = load_records(source, fmt=fmt, license=license, source=source_name,
                          column_map=parse_column_map(column_map), on_error=on_error)
    write_jsonl(output, result.records)
    rejects = rejects or output.with_name(output.name.removesuffix(".jsonl") + ".rejects.jsonl")
    if result.malformed:
        write_jsonl(rejects, [m.as_reject() for m in result.malformed])
    console.print(f"[green]{len(result.records):,} records[/] ({result.fmt}) -> {output}"
                  + (f"; [yellow]{len(result.malformed):,} malformed rows[/] -> {rejects}" if result.malformed else ""))
    if not result.records and result.malformed:
        console.print(f"[bold red]error:[/] all {len(result.malformed):,} rows of {escape(source)} were malformed: "
                      f"no records imported. The reason for each row is in {escape(str(rejects))}")
        raise typer.Exit(1)


@app.command("curate")
def curate_cmd(
    inputs: list[str] = typer.Argument(..., help="Input files (.json, .jsonl, .csv, .tsv, .parquet, optionally .gz) or hf:org/name[:split]."),
    outdir: Path = typer.Option(..., "-o", "--outdir", help="Output folder: curated.jsonl, rejects.jsonl, changes.jsonl, datasheet.md."),
    config_path: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML CurateConfig; the options below override it."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
    license: Optional[str] = typer.Option(None, "--license", help="SPDX licence id of the inputs (e.g. CC-BY-NC-4.0); without it records are 'unknown'."),
    source_name: Optional[str] = typer.Option(None, "--source", help="Source name recorded in provenance (default: the file name)."),
    column_map: Optional[str] = typer.Option(None, "--column-map", help=COLUMN_MAP_HELP),
    on_error: Optional[str] = typer.Option(None, "--on-error", help="reject (default): malformed rows go to rejects.jsonl with file:line; fail: stop at the first."),
    commercial: bool = typer.Option(False, "--commercial", help="Licence preset for commercial use: reject CC-BY-NC-* and unknown licences."),
    allow_license: Optional[list[str]] = typer.Option(None, "--allow-license", help="Keep only these licences (fnmatch patterns, repeatable)."),
    deny_license: Optional[list[str]] = typer.Option(None, "--deny-license", help="Reject these licences (fnmatch patterns, repeatable)."),
    decontaminate: Optional[list[str]] = typer.Option(None, "--decontaminate", help="Evaluation file to decontaminate against, FILE or FILE::field1,field2 (repeatable)."),
    ngram: Optional[int] = typer.Option(None, "--decontam-n", help="Word n-gram size for decontamination (default 13)."),
    near_dup_threshold: Optional[float] = typer.Option(None, "--near-dup-threshold", help="Jaccard threshold for near-duplicates (default 0.8)."),
    no_near_dup: bool = typer.Option(False, "--no-near-dup", help="Skip MinHash near-duplicate removal."),
    no_exact_dup: bool = typer.Option(False, "--no-exact-dup", help="Skip exact duplicate removal."),
    no_pii: bool = typer.Option(False, "--no-pii", help="Skip PII redaction."),
    no_quality: bool = typer.Option(False, "--no-quality", help="Skip the quality heuristics."),
    no_normalise: bool = typer.Option(False, "--no-normalise", help="Skip Unicode/whitespace normalisation."),
    toxicity: Optional[bool] = typer.Option(None, "--toxicity/--no-toxicity", help="Run the toxicity filter (needs a scorer; default: off)."),
    toxicity_scorer: Optional[str] = typer.Option(None, "--toxicity-scorer", help="'builtin' or module:function (texts -> probabilities)."),
    toxicity_threshold: Optional[float] = typer.Option(None, "--toxicity-threshold", help="Reject records scoring at least this (default 0.5)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """Curate instruction data: validate, normalise, redact PII, dedup, filter, decontaminate, document."""
    from tunelens.config_files import Append
    from tunelens.data.config import COMMERCIAL, load
    from tunelens.data.curate import curate
    from tunelens.data.importers import parse_column_map

    # Dotted CurateConfig overrides on top of the --config file (None: the option was not given);
    # the config is validated once, with them.
    overrides = {
        "format": fmt, "license": license, "source": source_name,
        "column_map": parse_column_map(column_map), "on_error": on_error,
        "dedup.threshold": near_dup_threshold, "decontaminate.n": ngram,
        "toxicity.enabled": toxicity, "toxicity.scorer": toxicity_scorer, "toxicity.threshold": toxicity_threshold,
        **(COMMERCIAL if commercial else {}),
        "license_policy.allow": allow_license or None,
        "license_policy.deny": Append(deny_license) if deny_license else None,
        "decontaminate.files": Append(decontaminate) if decontaminate else None,
    }
    for flag, key in ((no_near_dup, "dedup.near"), (no_exact_dup, "dedup.exact"), (no_pii, "pii.enabled"),
                      (no_quality, "quality.enabled"), (no_normalise, "normalise.enabled")):
        if flag:
            overrides[key] = False
    config = load(config_path, overrides)
    if not inputs:
        raise ConfigError("give at least one input file")
    report = curate(inputs, outdir, config, progress=not quiet)
    _print_summary(report)
    if report.kept == 0:
        _fail_nothing_kept(report)


def _fail_nothing_kept(report) -> None:
    """An empty curated.jsonl is a failed curation: say so loudly and exit 1 (the outputs stay)."""
    curated, rejects = escape(report.files["curated.jsonl"]), escape(report.files["rejects.jsonl"])
    if report.records_in == 0:
        console.print(f"[bold red]error:[/] the inputs hold no records: nothing to curate ({curated} is empty)")
    else:
        by_step: dict[str, int] = {}
        for s in report.steps:
            if s.rejected:
                by_step[s.name] = s.rejected
        malformed = sum(i.malformed for i in report.inputs)
        if malformed:
            by_step = {"import (malformed rows)": malformed, **by_step}
        where = ", ".join(f"{name}: {n:,}" for name, n in by_step.items())
        console.print(f"[bold red]error: all {report.records_in:,} records were rejected[/] ({where}); "
                      f"{curated} is empty. The reason for each record is in {rejects}")
    raise typer.Exit(1)


def _print_summary(report) -> None:
    table = Table(title=f"curated: {report.records_in:,} in -> {report.kept:,} kept, {report.rejected:,} rejected, "
                        f"{report.changed:,} changed ({report.seconds:.1f} s)")
    for col in ("step", "in", "kept", "rejected", "changed", "seconds", "notes"):
        table.add_column(col, justify="left" if col in ("step", "notes") else "right")
    malformed = sum(i.malformed for i in report.inputs)
    table.add_row("import", f"{report.records_in:,}", f"{report.records_in - malformed:,}", f"{malformed:,}", "0", "",
                  ", ".join(f"{i.source}: {i.format}" for i in report.inputs))
    for s in report.steps:
        table.add_row(s.name, f"{s.records_in:,}", f"{s.kept:,}", f"{s.rejected:,}", f"{s.changed:,}", f"{s.seconds:.2f}", _notes(s))
    out = Console()
    out.print(table)
    out.print("outputs: " + ", ".join(report.files.values()))


def _notes(step) -> str:
    st = step.stats
    if step.name == "pii":
        return json.dumps(st.get("counts", {}))
    if st.get("reasons"):  # every filter step (FilterStep) counts its reasons here
        return ", ".join(f"{k}: {v}" for k, v in st["reasons"].items())
    if step.name.startswith("dedup"):
        return f"{st.get('clusters', 0)} clusters"
    if step.name == "decontaminate":
        return ", ".join(f"{Path(f).name}: {n}" for f, n in st.get("contaminated_by_file", {}).items()) or "clean"
    return ""
