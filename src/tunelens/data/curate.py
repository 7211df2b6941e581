"""The curation pipeline: import, then every enabled curation step in its order (the steps of
tunelens.data.steps: validate first, then licence policy, normalisation, PII, dedup, filters,
decontamination, toxicity), writing four files to OUTDIR:

- ``curated.jsonl``: the kept records (provenance sha256 refreshed after rewriting);
- ``rejects.jsonl``: every dropped record or malformed row, with the step, reason and location;
- ``changes.jsonl``: every record changed by normalisation or PII redaction, before and after;
- ``datasheet.md``: a Hugging Face dataset card (see datasheet.py).

``inputs`` may mix file paths / ``hf:`` ids and already-built record dicts (e.g. the built-in
suite records); dicts are validated like imported rows. The invariant
``input records = kept + rejected`` is checked after every step and for the whole run.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tunelens.data.config import CurateConfig
from tunelens.data.datasheet import CurateReport, InputReport, StepReport, write_datasheet
from tunelens.data.importers import ImportResult, load_records
from tunelens.data.steps import BuildContext, InvariantError, Step, all_steps, check_partition
from tunelens.errors import TunelensError, check_input_file
from tunelens.progress import Reporter, reporting
from tunelens.records import content_hash

OUTPUT_FILES = ("curated.jsonl", "rejects.jsonl", "changes.jsonl", "datasheet.md")
INPUT_FILES = "a JSONL/JSON/CSV/TSV/Parquet file (optionally .gz)"
_TEXT_SUFFIXES = {".jsonl", ".ndjson", ".json", ".csv", ".tsv"}
PROGRESS_MIN_ITEMS = 2000  # a step over fewer items gets no bar of its own (it takes moments)


def check_input(spec: str | Path) -> None:
    """Fail with a message naming an input file that is missing, a directory, unreadable or binary
    (``hf:`` ids pass). Only the text formats are sniffed for binary content (Parquet is binary)."""
    if str(spec).startswith("hf:"):
        return
    path = Path(spec)
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    check_input_file(path, expected=INPUT_FILES, sniff=bool(suffixes) and suffixes[-1] in _TEXT_SUFFIXES)


def build_steps(config: CurateConfig, scorer: Callable[[list[str]], list[float]] | None = None) -> list[Step]:
    """The enabled steps, in pipeline order (construction checks decontamination files and scorer up front).

    Every registered step (tunelens.data.steps) is built from its section of ``config``; a given
    ``scorer`` turns the toxicity step on."""
    ctx = BuildContext(scorer=scorer)
    steps = []
    for step_class in all_steps():
        step = step_class.from_config(config_section(config, step_class), ctx)
        if step is not None:
            steps.append(step)
    return steps


def config_section(config: CurateConfig, step: type[Step]):
    """The section of ``config`` that sets ``step`` up: its field named or aliased ``step.config_key``
    (a CurateConfig without that field gives the section's defaults)."""
    for name, info in type(config).model_fields.items():
        if step.config_key in (name, info.alias):
            return getattr(config, name)
    return step.config_model()


def import_inputs(inputs: Iterable[str | Path | dict], config: CurateConfig,
                  on_file: Callable[[str], None] | None = None) -> tuple[list[dict], list[str], list[dict], list[InputReport]]:
    """(records, their locations, import rejects, per-input reports)."""
    records, locations, rejects, reports = [], [], [], []
    memory: list[dict] = []
    inputs = list(inputs)
    for item in inputs:  # every file first: a bad one fails before minutes of importing the others
        if isinstance(item, (str, Path)):
            check_input(item)
        elif not isinstance(item, dict):
            raise TunelensError(f"curate input {item!r}: expected a file path, an 'hf:' id or a record dict")
    for item in inputs:
        if isinstance(item, dict):
            memory.append(item)
            continue
        if on_file:
            on_file(str(item))
        result: ImportResult = load_records(item, fmt=config.format, license=config.license, source=config.source,
                                            column_map=config.column_map, on_error=config.on_error)
        records.extend(result.records)
        locations.extend(result.locations)
        rejects.extend(m.as_reject() for m in result.malformed)
        reports.append(InputReport(result.source, result.source_file, result.fmt, len(result.records), len(result.malformed)))
    if memory:
        records.extend(memory)
        locations.extend(f"<memory>:item {i}" for i in range(len(memory)))
        reports.append(InputReport("<memory>", "<memory>", "records", len(memory), 0))
    return records, locations, rejects, reports


def curate(
    inputs: Iterable[str | Path | dict],
    outdir: str | Path,
    config: CurateConfig | None = None,
    scorer: Callable[[list[str]], list[float]] | None = None,
    progress: bool = False,
    on_progress: Reporter | None = None,
) -> CurateReport:
    """Run the curation pipeline and write the four output files to ``outdir``.

    ``inputs``: file paths / ``hf:org/name[:split]`` ids, and/or record dicts (in memory).
    ``scorer``: a toxicity scorer (texts -> probabilities); given, it enables the toxicity step.
    ``progress``: show a rich progress display (on stderr) naming the running step, and within a
    step over at least PROGRESS_MIN_ITEMS items a bar with its ETA (the steps report through
    ``tunelens.progress.track``). ``on_progress(label, done, total)`` gets the same reports, the
    label being ``"<step>: <what>"`` (e.g. ``"pii: texts"``).
    """
    config = config or CurateConfig()
    started = time.perf_counter()
    steps = build_steps(config, scorer)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task("importing", total=len(steps) + 2)
        detail = bar.add_task("", total=None, visible=False)
        records, locations, rejects, input_reports = import_inputs(
            inputs, config, on_file=lambda name: bar.update(task, description=f"import: {name}"))
        bar.advance(task)
        n_input = len(records) + len(rejects)
        origin = _origins(records, input_reports)
        kept, rejects, changes, changed_ids, step_reports = _run_steps(steps, records, locations, rejects, config, bar, task,
                                                                        detail, on_progress)
        kept_by_input = Counter(origin[id(r)] for r in kept)  # steps keep the record objects (check_partition)
        licences_by_input: dict[int, set[str]] = {}
        for r in kept:
            licences_by_input.setdefault(origin[id(r)], set()).add((r.get("provenance") or {}).get("license", "unknown"))
        for i, rep in enumerate(input_reports):
            rep.kept = kept_by_input.get(i, 0)
            rep.licences_kept = sorted(licences_by_input.get(i, set()))
        if n_input != len(kept) + len(rejects):
            raise InvariantError(f"{n_input} records in but {len(kept)} kept + {len(rejects)} rejected")
        bar.update(task, description=f"writing {outdir}")
        report = _write_outputs(Path(outdir), kept, rejects, changes, changed_ids, input_reports, step_reports, n_input, config)
        bar.advance(task)
        bar.update(task, description=f"done: {len(kept):,} kept, {len(rejects):,} rejected")
    report.seconds = round(time.perf_counter() - started, 3)
    (Path(outdir) / "curate_report.json").write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
    return report


def _origins(records: list[dict], reports: list[InputReport]) -> dict[int, int]:
    """id(record) -> the index of the input it was imported from (records come input by input)."""
    origin, start = {}, 0
    for i, rep in enumerate(reports):
        for rec in records[start:start + rep.records]:
            origin[id(rec)] = i
        start += rep.records
    if start != len(records):
        raise InvariantError(f"{len(records)} records imported but the inputs report {start}")
    return origin


def _run_steps(steps, records, locations, rejects, config, bar, task, detail=None, on_progress=None):
    location_of = {id(r): loc for r, loc in zip(records, locations)}
    changes: list[dict] = []
    changed_ids: set[str] = set()
    step_reports: list[StepReport] = []
    phase: dict[str, str] = {}  # the description the within-step bar shows now
    for step in steps:
        bar.update(task, description=f"{step.name}: {len(records):,} records")
        t0 = time.perf_counter()

        def report(label: str, done: int, total: int, name: str = step.name) -> None:
            if on_progress is not None:
                on_progress(f"{name}: {label}", done, total)
            if detail is None:
                return
            description = f"  {name}: {label}"
            if phase.get("description") != description:  # a new phase: its own clock and speed for the ETA
                phase["description"] = description
                bar.reset(detail, total=total, description=description, visible=total >= PROGRESS_MIN_ITEMS)
            bar.update(detail, completed=done, total=total)

        with reporting(report):
            result = step.run(records)
        if detail is not None:
            bar.update(detail, visible=False, description="")
        check_partition(step.name, records, result)
        for rej in result.rejected:
            loc = location_of.get(id(rej.record), "")
            if step.name == "validate" and config.on_error == "fail":
                raise TunelensError(f"{loc}: {rej.reason}")
            rec_id = rej.record.get("id") if isinstance(rej.record, dict) else None
            rejects.append({"step": step.name, "reason": rej.reason, "location": loc, "id": rec_id,
                            "detail": rej.detail, "record": rej.record})
        for change in result.changes:
            changes.append({"step": step.name, "id": change.record_id, "fields": change.fields, **change.detail})
            changed_ids.add(change.record_id)
        step_reports.append(StepReport(step.name, len(records), len(result.kept), len(result.rejected),
                                       len(result.changes), round(time.perf_counter() - t0, 3), result.stats))
        records = result.kept
        bar.advance(task)
    return records, rejects, changes, changed_ids, step_reports


def _write_outputs(outdir, kept, rejects, changes, changed_ids, input_reports, step_reports, n_input, config) -> CurateReport:
    for rec in kept:
        if rec["id"] in changed_ids or not rec["provenance"].get("sha256"):
            rec["provenance"]["sha256"] = content_hash(rec)
    outdir.mkdir(parents=True, exist_ok=True)
    files = {name: str(outdir / name) for name in OUTPUT_FILES}
    _write_jsonl(outdir / "curated.jsonl", kept)
    _write_jsonl(outdir / "rejects.jsonl", rejects)
    _write_jsonl(outdir / "changes.jsonl", changes)
    report = CurateReport(str(outdir), input_reports, step_reports, n_input, len(kept), len(rejects), len(changed_ids), 0.0, files)
    write_datasheet(outdir / "datasheet.md", report, kept, rejects, config)
    return report


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            line = json.dumps(row, ensure_ascii=False, default=str)
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:  # a rejected record with lone surrogates: escape them
                line = json.dumps(row, ensure_ascii=True, default=str)
            fh.write(line + "\n")
