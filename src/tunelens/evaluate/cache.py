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


class GenerationCache:
    def __init__(self, root: Path, fingerprint: str, params_key: dict[str, Any], enabled: bool = True):
        self.enabled = enabled
        params_hash = _digest(json.dumps(params_key, sort_keys=True))[:16]
        self.path = Path(root) / f"{fingerprint}-{params_hash}.jsonl"
        self._entries: dict[str, dict] = {}
        if enabled and self.path.is_file():
            with self.path.open(encoding="utf-8") as fh:
                for line in fh:
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a torn last line from an interrupted run: regenerate that prompt
                    self._entries[row["key"]] = row

    def get(self, rendered_prompt: str) -> dict | None:
        return self._entries.get(_digest(rendered_prompt)) if self.enabled else None

    def put_many(self, rows: list[tuple[str, dict]]) -> None:
        if not self.enabled or not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            for rendered, result in rows:
                entry = {"key": _digest(rendered), **result}
                self._entries[entry["key"]] = entry
                fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
