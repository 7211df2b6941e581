"""Decontamination: drop records sharing a word n-gram (13 by default) with an evaluation set.

Evaluation files are read in their native formats: JSONL / JSON / CSV rows (fields detected
among DEFAULT_FIELDS or named explicitly, e.g. IFEval ``prompt``, GSM8K ``question``/``answer``),
tunelens records (all turns), or plain text (one item per paragraph). All n-grams of all texts
are hashed at once with numpy and tested with ``np.isin`` against the evaluation set's hashes,
so the cost is linear in the data, not records x eval items.
"""

from __future__ import annotations

import csv
import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from tunelens.progress import track
from tunelens.data.steps.base import Record, Rejection, SectionConfig, Step, StepResult, message_fields, register
from tunelens.data.textkeys import TokenCache, ngram_hashes, words
from tunelens.errors import TunelensError
from tunelens.records import record_texts

DEFAULT_FIELDS = ("prompt", "question", "answer", "instruction", "input", "output", "text", "content",
                  "goal", "chosen", "rejected", "response")


@dataclass
class EvalItem:
    file: str
    index: int
    text: str


def _open(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")


def _row_texts(row, fields: list[str] | None, where: str) -> list[str]:
    if not isinstance(row, dict):
        return [row] if isinstance(row, str) else []
    if fields is None and row.get("kind") in ("conversation", "preference"):
        return [t for t in record_texts(row) if isinstance(t, str)]
    if fields is not None:
        missing = [f for f in fields if f not in row]
        if missing:
            raise TunelensError(f"{where}: field(s) {missing} not found; the fields are {sorted(row)}")
        names = fields
    else:
        names = [f for f in DEFAULT_FIELDS if isinstance(row.get(f), str)]
        if isinstance(row.get("messages"), list):
            return [m.get("content") for m in row["messages"] if isinstance(m, dict) and isinstance(m.get("content"), str)]
    return [row[f] for f in names if isinstance(row.get(f), str)]


def read_eval_texts(spec: DecontamFile) -> list[EvalItem]:
    path = spec.path
    if not path.is_file():
        raise TunelensError(f"decontamination file {path}: no such file")
    name = path.name.lower().removesuffix(".gz")
    items: list[EvalItem] = []
    try:
        with _open(path) as fh:
            if name.endswith(".txt") or name.endswith(".md"):
                rows = [p for p in fh.read().split("\n\n") if p.strip()]
                locs = [f"{path}:paragraph {i + 1}" for i in range(len(rows))]
            elif name.endswith(".csv") or name.endswith(".tsv"):
                reader = csv.DictReader(fh, delimiter="\t" if name.endswith(".tsv") else ",")
                rows = list(reader)
                locs = [f"{path}:row {i + 1}" for i in range(len(rows))]
            elif name.endswith(".json"):
                doc = json.load(fh)
                rows = doc if isinstance(doc, list) else [doc]
                locs = [f"{path}:item {i}" for i in range(len(rows))]
            else:  # JSON lines
                rows, locs = [], []
                for lineno, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as exc:
                            raise TunelensError(f"{path}:{lineno}: invalid JSON in decontamination file ({exc.msg})") from None
                        locs.append(f"{path}:{lineno}")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TunelensError(f"decontamination file {path}: cannot read: {exc}") from None
    for i, (row, loc) in enumerate(zip(rows, locs)):
        for text in _row_texts(row, spec.fields, loc):
            items.append(EvalItem(str(path), i, text))
    if not items:
        raise TunelensError(f"decontamination file {path}: no evaluation text found; name the field(s), e.g. {path}::prompt")
    return items



class DecontamFile(SectionConfig):
    path: Path
    fields: list[str] | None = Field(None, description="JSON fields holding eval text; default: detected (prompt, question, answer...).")


def _decontam_spec(value: str | Path) -> dict:
    """'path' or 'path::field1,field2' -> {path, fields}."""
    path, sep, fields = str(value).partition("::")
    return {"path": path, "fields": [f.strip() for f in fields.split(",") if f.strip()] or None} if sep else {"path": path}


class DecontaminateConfig(SectionConfig):
    files: list[DecontamFile] = Field(default_factory=list, description="Evaluation sets to check against.")
    n: int = Field(13, ge=3, le=64, description="Word n-gram size; a shared n-gram marks a record contaminated.")

    @field_validator("files", mode="before")
    @classmethod
    def _paths(cls, value):
        return [_decontam_spec(v) if isinstance(v, (str, Path)) else v for v in value or []]

@register
class Decontaminate(Step):
    name = "decontaminate"
    order = 90
    config_key = "decontaminate"
    config_model = DecontaminateConfig

    def __init__(self, config: DecontaminateConfig, tokens: TokenCache | None = None) -> None:
        self.config = config
        self.tokens = tokens or TokenCache()
        self.hasher = self.tokens.hasher
        self.items: list[EvalItem] = []
        for spec in config.files:
            self.items.extend(read_eval_texts(spec))
        n = config.n
        tokens = [self.hasher.hashes(words(item.text)) for item in self.items]
        self.too_short = sum(1 for t in tokens if len(t) < n)
        hashes, owner = ngram_hashes(tokens, n)
        # First owner of each distinct n-gram, for the report.
        self.eval_hashes, first = np.unique(hashes, return_index=True)
        self.eval_owner = owner[first]

    @classmethod
    def from_config(cls, config, ctx):
        return cls(config, ctx.tokens) if config.files else None

    def run(self, records: list[Record]) -> StepResult:
        n = self.config.n
        field_texts, field_owner = [], []
        for i, rec in enumerate(records):
            for _, text in message_fields(rec):
                field_texts.append(text)
                field_owner.append(i)
        hashes, owner = ngram_hashes([self.tokens.hashes(t) for t in track(field_texts, "texts")], n)
        hit = np.isin(hashes, self.eval_hashes)
        first_hit: dict[int, int] = {}  # record index -> position of its first matching n-gram
        for pos in np.flatnonzero(hit):
            first_hit.setdefault(field_owner[owner[pos]], pos)
        result = StepResult(kept=[])
        per_file: dict[str, int] = {}
        for i, rec in enumerate(records):
            if i not in first_hit:
                result.kept.append(rec)
                continue
            pos = first_hit[i]
            item = self.items[int(self.eval_owner[np.searchsorted(self.eval_hashes, hashes[pos])])]
            gram = self._gram_text(field_texts[owner[pos]], hashes[pos])
            per_file[item.file] = per_file.get(item.file, 0) + 1
            result.rejected.append(Rejection(
                rec, f"contaminated: shares a {n}-gram with {item.file} item {item.index}",
                {"eval_file": item.file, "eval_item": item.index, "ngram": gram},
            ))
        result.stats.update(n=n, eval_texts=len(self.items), eval_ngrams=int(len(self.eval_hashes)),
                            eval_texts_shorter_than_n=self.too_short, contaminated_by_file=per_file)
        return result

    def _gram_text(self, text: str, target: np.uint64) -> str:
        toks = words(text)
        hashes, _ = ngram_hashes([self.hasher.hashes(toks)], self.config.n)
        idx = int(np.flatnonzero(hashes == target)[0])
        return " ".join(toks[idx : idx + self.config.n])
