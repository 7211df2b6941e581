"""Stage-complete markers and input hashes: what lets a rerun skip finished stages."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def path_digest(path: str | Path) -> str:
    """sha256 of a file, of a directory's files (names and contents), or of the spec string itself."""
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    if path.is_dir():
        h = hashlib.sha256()
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(str(p.relative_to(path)).encode())
            h.update(file_digest(p).encode())
        return h.hexdigest()
    return "spec:" + hashlib.sha256(str(path).encode()).hexdigest()  # a hub id or a built-in name


def stage_hash(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class RunState:
    """``run.json`` (status, per-stage hash and timing) and ``stages/<stage>.done`` markers."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.path = run_dir / "run.json"
        self.markers = run_dir / "stages"
        self.data: dict[str, Any] = {"status": "new", "stages": {}}
        if self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                pass  # a run.json cut off mid-write: start the bookkeeping over, markers still count
        self.data.setdefault("stages", {})

    def save(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str), encoding="utf-8")
        tmp.replace(self.path)

    def marker(self, stage: str) -> Path:
        return self.markers / f"{stage}.done"

    def is_complete(self, stage: str, digest: str) -> bool:
        m = self.marker(stage)
        if not m.is_file():
            return False
        try:
            return json.loads(m.read_text(encoding="utf-8")).get("hash") == digest
        except json.JSONDecodeError:
            return False

    def start(self, stage: str, digest: str) -> None:
        self.data["status"] = f"running {stage}"
        self.data["stages"][stage] = {"status": "running", "hash": digest, "started": _now()}
        self.save()

    def complete(self, stage: str, digest: str, wall_s: float, summary: dict[str, Any]) -> None:
        self.markers.mkdir(parents=True, exist_ok=True)
        entry = {"status": "complete", "hash": digest, "completed": _now(), "wall_s": round(wall_s, 2), "summary": summary}
        self.data["stages"][stage] = entry
        self.marker(stage).write_text(json.dumps({"stage": stage, **entry}, indent=2, default=str), encoding="utf-8")
        self.save()

    def skipped(self, stage: str) -> None:
        self.data["stages"].setdefault(stage, {})["last_skipped"] = _now()
        self.save()

    def interrupted(self, stage: str) -> None:
        self.data["status"] = f"interrupted during {stage}"
        self.data["stages"].setdefault(stage, {})["status"] = "interrupted"
        self.save()

    def invalidate(self, stage: str) -> None:
        self.marker(stage).unlink(missing_ok=True)
        if stage in self.data["stages"]:
            self.data["stages"][stage]["status"] = "invalidated"

    def in_progress_hash(self, stage: str) -> str | None:
        entry = self.data["stages"].get(stage) or {}
        return entry.get("hash") if entry.get("status") in ("running", "interrupted") else None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
