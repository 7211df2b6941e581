"""On-disk generation cache keyed by (model fingerprint, generation params, rendered prompt).

One JSON-lines file per (fingerprint, params) pair; each line holds one prompt's result. A rerun
on the same model, prompts and params reads outputs back and only recomputes scores.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_lines(path: Path) -> list[dict]:
    """The entries of a cache file; a torn line from an interrupted run is skipped (recomputed)."""
    rows = []
    if path.is_file():
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and "key" in row:
                    rows.append(row)
    return rows


def _append_lines(path: Path, lines: list[str]) -> None:
    """Append JSON lines; a torn last line left by an interrupted writer is ended first, so the new
    first line is not glued onto it (and lost with it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torn = False
    if path.is_file() and path.stat().st_size:
        with path.open("rb") as fh:
            fh.seek(-1, 2)
            torn = fh.read(1) != b"\n"
    with path.open("a", encoding="utf-8") as fh:
        fh.write(("\n" if torn else "") + "".join(line + "\n" for line in lines))


class GenerationCache:
    def __init__(self, root: Path, fingerprint: str, params_key: dict[str, Any], enabled: bool = True):
        self.enabled = enabled
        params_hash = _digest(json.dumps(params_key, sort_keys=True))[:16]
        self.path = Path(root) / f"{fingerprint}-{params_hash}.jsonl"
        self._entries: dict[str, dict] = {row["key"]: row for row in _read_lines(self.path)} if enabled else {}

    def get(self, rendered_prompt: str) -> dict | None:
        return self._entries.get(_digest(rendered_prompt)) if self.enabled else None

    def put_many(self, rows: list[tuple[str, dict]]) -> None:
        if not self.enabled or not rows:
            return
        lines = []
        for rendered, result in rows:
            entry = {"key": _digest(rendered), **result}
            self._entries[entry["key"]] = entry
            lines.append(json.dumps(entry, ensure_ascii=False))
        _append_lines(self.path, lines)


LOGPROB_CACHE_VERSION = "1"  # bump when what a cached log-prob means changes (tokenisation of a pair, the sum)


class LogprobCache:
    """On-disk cache of a model's log-probabilities, keyed by (model fingerprint, scored text).

    The log-prob suites' counterpart of :class:`GenerationCache`: it holds what the model computed
    (the summed log-prob of a continuation after a rendered prompt, or the summed NLL of a tokenised
    sequence's supervised tokens), never a suite's score, so scoring code can change without
    invalidating it. The base model of every run is the same checkpoint, so its TruthfulQA, BBQ
    and held-out-loss forward passes are computed once per machine. One JSON-lines file per
    fingerprint; a torn last line is ignored (that entry is recomputed). ``engine_key``: what computed the
    values when it is not the fp32 model (a generation backend's ``BackendInfo.cache_key()``, e.g. llama.cpp
    f16 on a GGUF of this model): its values get a file of their own, so the two are never mixed.
    """

    def __init__(self, root: Path, fingerprint: str, enabled: bool = True, engine_key: dict[str, Any] | None = None):
        self.enabled = enabled
        engine = "" if engine_key is None else "-" + _digest(json.dumps(engine_key, sort_keys=True))[:16]
        self.path = Path(root) / f"{fingerprint}{engine}-logprobs-v{LOGPROB_CACHE_VERSION}.jsonl"
        self._entries: dict[str, tuple[float, int]] = {
            row["key"]: (float(row["value"]), int(row["tokens"])) for row in _read_lines(self.path)
            if {"value", "tokens"} <= row.keys()} if enabled else {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(kind: str, *parts: Any) -> str:
        return _digest(json.dumps([kind, *parts], ensure_ascii=False))

    def get(self, key: str) -> tuple[float, int] | None:
        if not self.enabled:
            return None
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def put_many(self, rows: list[tuple[str, tuple[float, int]]]) -> None:
        if not self.enabled or not rows:
            return
        for key, (value, tokens) in rows:
            self._entries[key] = (float(value), int(tokens))
        _append_lines(self.path, [json.dumps({"key": key, "value": float(v), "tokens": int(n)}) for key, (v, n) in rows])
