"""Read a run directory's artifacts. Cards and the report are built from these only."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelens.datafiles import hub_dataset_id
from tunelens.errors import TunelensError

# Where each stage writes, relative to the run dir (the pipeline's layout).
LAYOUT = {
    "run_config": "config.yaml",
    "run_state": "run.json",
    "suite_summary": "suite/summary.json",
    "curated": "curate/curated.jsonl",
    "rejects": "curate/rejects.jsonl",
    "changes": "curate/changes.jsonl",
    "datasheet": "curate/datasheet.md",
    "curate_report": "curate/curate_report.json",
    "train_config": "train/config.yaml",
    "train_manifest": "train/manifest.json",
    "train_summary": "train/train_summary.json",
    "train_metrics": "train/metrics.jsonl",
    "loss_curve": "train/loss_curve.png",
    "dropped_examples": "train/dropped_examples.jsonl",
    "adapter": "train/adapter",
    "results": "eval/results.json",
    "samples": "eval/samples.jsonl",
    "eval_report": "eval/report.html",
    "explain": "explain/explain.json",
    "model_card": "cards/model_card.md",
    "dataset_card": "cards/dataset_card.md",
    "report": "report.html",
    "summary": "summary.json",
}


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TunelensError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None


def _yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TunelensError(f"{path}: invalid YAML: {exc}") from None


def _jsonl(path: Path) -> list[dict]:
    from tunelens.records import iter_jsonl

    try:
        return list(iter_jsonl(path))
    except ValueError as exc:
        raise TunelensError(str(exc)) from None


@dataclass
class RunArtifacts:
    run_dir: Path
    run_config: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    train_summary: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    explain: dict[str, Any] = field(default_factory=dict)
    suite_summary: dict[str, Any] = field(default_factory=dict)
    licence_mix: Counter = field(default_factory=Counter)
    source_mix: Counter = field(default_factory=Counter)
    hub_datasets: Counter = field(default_factory=Counter)  # hub dataset id -> curated records from it
    source_hub: dict[str, str | None] = field(default_factory=dict)  # source -> its hub dataset id (None: has none)
    n_curated: int = 0
    reject_reasons: Counter = field(default_factory=Counter)  # curation step -> records rejected there
    reject_examples: dict[str, str] = field(default_factory=dict)  # step -> its first reason, as an example

    def path(self, key: str) -> Path:
        return self.run_dir / LAYOUT[key]

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def rel(self, key: str) -> str:
        return LAYOUT[key]




def load_run(run_dir: str | Path, require: tuple[str, ...] = ("results", "train_manifest")) -> RunArtifacts:
    """Load what a run dir holds; the artifacts in ``require`` must exist."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TunelensError(f"run directory not found: {run_dir}")
    art = RunArtifacts(run_dir=run_dir)
    missing = [LAYOUT[k] for k in require if not art.exists(k)]
    if missing:
        raise TunelensError(f"{run_dir} is missing {', '.join(missing)}: run `tunelens run` to produce them first")
    if art.exists("run_config"):
        art.run_config = _yaml(art.path("run_config")) or {}
    if art.exists("train_config"):
        art.train_config = _yaml(art.path("train_config")) or {}
    for attr, key in (("manifest", "train_manifest"), ("train_summary", "train_summary"), ("results", "results"),
                      ("explain", "explain"), ("suite_summary", "suite_summary")):
        if art.exists(key):
            setattr(art, attr, _json(art.path(key)))
    if art.exists("curated"):
        for rec in _jsonl(art.path("curated")):
            prov = rec.get("provenance") or {}
            art.licence_mix[prov.get("license", "unknown")] += 1
            art.source_mix[prov.get("source", "unknown")] += 1
            hub_id = hub_dataset_id(prov.get("source_file"))
            if hub_id:
                art.hub_datasets[hub_id] += 1
            art.source_hub.setdefault(prov.get("source", "unknown"), hub_id)
            art.n_curated += 1
    if art.exists("rejects"):
        for row in _jsonl(art.path("rejects")):
            step = str(row.get("step") or "unspecified")
            art.reject_reasons[step] += 1
            art.reject_examples.setdefault(step, str(row.get("reason") or "")[:120])
    return art
