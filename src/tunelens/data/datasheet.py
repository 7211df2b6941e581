"""datasheet.md: a Hugging Face dataset card (YAML metadata + sections) for a curation run, and the
run's report that it is built from (also written as curate_report.json)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from huggingface_hub import DatasetCard, DatasetCardData

from tunelens.cards.hub import HUB_LICENSES, check_metadata
from tunelens.data.licences import hub_license_id
from tunelens.datafiles import hub_dataset_id
from tunelens.data.steps.base import prompt_and_responses
from tunelens.records import UNKNOWN_LICENSE

if TYPE_CHECKING:
    from tunelens.data.config import CurateConfig


# What a curation run measured: curate builds it, the datasheet renders it, curate_report.json stores it.
@dataclass
class InputReport:
    source: str
    source_file: str
    format: str
    records: int
    malformed: int
    kept: int = 0  # records of this input that curation kept
    licences_kept: list[str] = field(default_factory=list)  # their licences


@dataclass
class StepReport:
    name: str
    records_in: int
    kept: int
    rejected: int
    changed: int
    seconds: float
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class CurateReport:
    outdir: str
    inputs: list[InputReport]
    steps: list[StepReport]
    records_in: int
    kept: int
    rejected: int
    changed: int
    seconds: float
    files: dict[str, str]

    def step(self, name: str) -> StepReport | None:
        return next((s for s in self.steps if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def size_category(n: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")]
    return next((label for bound, label in bounds if n < bound), "n>100M")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _licence_mix(records: list[dict]) -> Counter:
    return Counter((r.get("provenance") or {}).get("license", UNKNOWN_LICENSE) if isinstance(r, dict) else UNKNOWN_LICENSE for r in records)


def _length_rows(records: list[dict]) -> list[list[Any]]:
    prompts, replies, turns = [], [], []
    for rec in records:
        prompt, reps = prompt_and_responses(rec)
        prompts.append(len(prompt))
        replies.append(sum(len(r) for r in reps))
        turns.append(len(rec.get("messages") or rec.get("prompt") or []) + (2 if rec.get("kind") == "preference" else 0))
    rows = []
    for name, values in (("prompt characters", prompts), ("reply characters", replies), ("messages per record", turns)):
        if values:
            a = np.asarray(values)
            rows.append([name, int(a.min()), int(np.median(a)), round(float(a.mean()), 1), int(np.percentile(a, 95)), int(a.max())])
    return rows


def build_datasheet(report: CurateReport, kept: list[dict], rejects: list[dict], config: CurateConfig) -> DatasetCard:
    sources = sorted({i.source for i in report.inputs})
    # Hub ids only (the Hub rejects file stems): of each input, and of the provenance of the records read.
    hub_ids = {hub_dataset_id(i.source_file) for i in report.inputs}
    hub_ids |= {hub_dataset_id((r.get("provenance") or {}).get("source_file"))
                for r in kept + [x["record"] for x in rejects if isinstance(x.get("record"), dict)] if isinstance(r, dict)}
    source_datasets = sorted(h for h in hub_ids if h)
    mix_out = _licence_mix(kept)
    mix_in = _licence_mix(kept + [r["record"] for r in rejects if "record" in r])
    kinds = Counter(r.get("kind", "conversation") for r in kept)
    tasks = ["text-generation"] + (["reinforcement-learning"] if kinds.get("preference") else [])
    data = DatasetCardData(
        # Hub licence ids; a licence the Hub does not know is "other" (the Licences section names it).
        license=sorted({hub_license_id(x) if hub_license_id(x) in HUB_LICENSES else "other" for x in mix_out})
        or [UNKNOWN_LICENSE],
        size_categories=[size_category(len(kept))],
        task_categories=tasks,
        source_datasets=source_datasets or None,
        pretty_name=f"tunelens curated data ({', '.join(sources)})",
        tags=["tunelens", "instruction-tuning", "curated"],
        tunelens={"records_in": report.records_in, "kept": report.kept, "rejected": report.rejected,
                  "changed": report.changed, "record_kinds": dict(kinds)},
    )
    by_step = {s.name: s for s in report.steps}
    parts = [
        f"# {data.pretty_name}",
        "Curated with `tunelens data curate`. Records are canonical tunelens JSONL (`curated.jsonl`); every dropped "
        "record is in `rejects.jsonl` with its step and reason, every rewritten record in `changes.jsonl`.",
        f"**{report.records_in:,} records in, {report.kept:,} kept, {report.rejected:,} rejected** "
        f"({report.changed:,} changed by normalisation or redaction). Invariant checked: in = kept + rejected.",
        "## Sources",
        _table(["source", "file / hub id", "Hub dataset", "format", "records", "malformed rows", "kept", "licences kept"],
               [[i.source, f"`{i.source_file}`", hub_dataset_id(i.source_file) or "-", i.format, i.records, i.malformed,
                 i.kept, ", ".join(i.licences_kept) or "-"] for i in report.inputs]),
        "Source datasets (metadata `source_datasets`) are Hub dataset ids; an input without one (the built-in "
        "suite, a local file) is described by this table only.",
        "## Licences",
        "Licences come from the `--license` flag, the config or the record itself; a record without one is "
        "`unknown` (never guessed).",
        _table(["licence", "records in", "records kept"], [[k, mix_in[k], mix_out.get(k, 0)] for k in sorted(mix_in)]),
        "## Curation steps",
        _table(["step", "in", "kept", "rejected", "changed", "seconds"],
               [["import", report.records_in, report.records_in - sum(i.malformed for i in report.inputs),
                 sum(i.malformed for i in report.inputs), 0, "-"]]
               + [[s.name, s.records_in, s.kept, s.rejected, s.changed, s.seconds] for s in report.steps]),
        "### Reject reasons",
        _reason_table(rejects),
        "## Length statistics (kept records)",
        _table(["measure", "min", "median", "mean", "p95", "max"], _length_rows(kept)) if kept else "No records kept.",
        "## PII redaction",
        _pii_section(by_step.get("pii")),
        "## Duplicates",
        _dedup_section(by_step),
        "## Contamination",
        _contamination_section(by_step.get("decontaminate"), rejects),
    ]
    if "toxicity" in by_step:
        s = by_step["toxicity"]
        parts += ["## Toxicity", f"Threshold {s.stats.get('threshold')}: {s.rejected:,} of {s.records_in:,} records rejected."]
    parts += ["## Configuration", "```yaml\n" + yaml.safe_dump(config.model_dump(mode="json", by_alias=True), sort_keys=False) + "```"]
    check_metadata(data.to_dict(), "dataset", "datasheet.md")
    content = f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(parts) + "\n"
    return DatasetCard(content)


def reason_key(reject: dict) -> str:
    """A reject's reason without its specifics, for counting (e.g. 'invalid JSON', 'duplicate')."""
    step, reason = reject["step"], reject["reason"]
    if step.startswith("dedup"):
        return "duplicate"
    if step == "decontaminate":
        return f"shares an n-gram with {Path(reject['detail']['eval_file']).name}"
    if step == "toxicity":
        return "toxic"
    if step == "license":
        return reason
    return re.split(r"[:(]", reason, maxsplit=1)[0].strip()


def _reason_table(rejects: list[dict]) -> str:
    counts = Counter((r["step"], reason_key(r)) for r in rejects)
    if not counts:
        return "None."
    return _table(["step", "reason", "records"], [[s, r, n] for (s, r), n in counts.most_common(25)])


def _pii_section(step) -> str:
    if step is None:
        return "PII redaction was disabled."
    counts = step.stats.get("counts", {})
    if not counts:
        return f"No PII found ({step.records_in:,} records checked)."
    return (f"{step.changed:,} records redacted. Placeholders by type:\n\n"
            + _table(["type", "count"], [[f"`[{k}]`", v] for k, v in sorted(counts.items())]))


def _dedup_section(by_step: dict) -> str:
    lines = []
    for name, label in (("dedup_exact", "Exact (normalised text)"), ("dedup_near", "Near (MinHash LSH)")):
        s = by_step.get(name)
        if s is None:
            lines.append(f"- {label}: disabled.")
            continue
        extra = (f" at Jaccard >= {s.stats['threshold']} on {s.stats['fields']} text ({s.stats['num_perm']} permutations, "
                 f"word {s.stats['ngram']}-grams)") if name == "dedup_near" else ""
        largest = ", ".join(f"`{c['kept']}` x{c['size']}" for c in s.stats.get("largest", []))
        lines.append(f"- {label}{extra}: {s.stats.get('clusters', 0):,} clusters, {s.rejected:,} records dropped"
                     + (f"; largest: {largest}" if largest else "") + ". Each dropped record names its kept `duplicate_of`.")
    return "\n".join(lines)


def _contamination_section(step, rejects: list[dict]) -> str:
    if step is None:
        return "No evaluation sets were given."
    st = step.stats
    rows = [[f"`{f}`", n] for f, n in sorted(st.get("contaminated_by_file", {}).items())]
    text = (f"Checked against {st['eval_texts']:,} evaluation texts ({st['eval_ngrams']:,} distinct word {st['n']}-grams; "
            f"{st['eval_texts_shorter_than_n']:,} texts shorter than {st['n']} words could not be checked). "
            f"{step.rejected:,} records removed.")
    if rows:
        text += "\n\n" + _table(["evaluation file", "records removed"], rows)
        examples = [r for r in rejects if r["step"] == "decontaminate"][:5]
        text += "\n\nExamples:\n\n" + "\n".join(f"- `{r['id']}` shares \"{r['detail']['ngram']}\" with item {r['detail']['eval_item']}" for r in examples)
    return text


def write_datasheet(path: str | Path, report: CurateReport, kept: list[dict], rejects: list[dict], config: CurateConfig) -> DatasetCard:
    card = build_datasheet(report, kept, rejects, config)
    card.save(str(path))
    return card
