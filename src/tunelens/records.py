"""The canonical record: one training example with its provenance.

Two kinds share one provenance block:
- ``conversation``: a list of messages (system/user/assistant) for SFT;
- ``preference``: a prompt conversation plus a chosen and a rejected assistant reply, for DPO.

On disk records are JSON lines (one record per line). Importers produce plain dicts in this
shape; the curation ``validate`` step checks them against the pydantic models below, so a bad
record is rejected with a reason instead of crashing an import.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ROLES = ("system", "user", "assistant")
Role = Literal["system", "user", "assistant"]
UNKNOWN_LICENSE = "unknown"


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role
    content: str


class Provenance(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = Field(description="Human name of the source, e.g. 'alpaca' or 'feedback'.")
    source_file: str | None = Field(default=None, description="File path or hub id ('hf:org/name').")
    row: int | None = Field(default=None, description="0-based row index in the source.")
    license: str = Field(default=UNKNOWN_LICENSE, description="SPDX id, or 'unknown'. Never guessed.")
    sha256: str = Field(default="", description="sha256 of the normalised content (see content_hash).")
    tags: list[str] = Field(default_factory=list)


class ConversationRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["conversation"] = "conversation"
    id: str
    messages: list[Message]
    provenance: Provenance
    meta: dict[str, Any] = Field(
        default_factory=dict,
        description="Free structured data: e.g. suite checker id/kwargs, family, split, instruction/context spans.",
    )


class PreferenceRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["preference"] = "preference"
    id: str
    prompt: list[Message] = Field(description="The conversation up to (not including) the reply.")
    chosen: str
    rejected: str
    provenance: Provenance
    meta: dict[str, Any] = Field(default_factory=dict)


Record = ConversationRecord | PreferenceRecord


def normalise_text(text: str) -> str:
    """NFC, unified newlines, trailing spaces stripped per line, outer whitespace stripped."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()


def record_texts(record: dict[str, Any]) -> list[str]:
    """All free-text fields of a record dict, in a stable order."""
    if record.get("kind") == "preference":
        return [m.get("content", "") for m in record.get("prompt", [])] + [
            record.get("chosen", ""),
            record.get("rejected", ""),
        ]
    return [m.get("content", "") for m in record.get("messages", [])]


def content_hash(record: dict[str, Any]) -> str:
    """sha256 over roles and normalised contents; provenance and ids do not count."""
    if record.get("kind") == "preference":
        payload: Any = {
            "prompt": [[m["role"], normalise_text(m["content"])] for m in record["prompt"]],
            "chosen": normalise_text(record["chosen"]),
            "rejected": normalise_text(record["rejected"]),
        }
    else:
        payload = [[m["role"], normalise_text(m["content"])] for m in record["messages"]]
    blob = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def make_conversation(
    messages: list[dict[str, str]],
    *,
    source: str,
    source_file: str | None,
    row: int | None,
    license: str | None,
    tags: list[str] | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a conversation record dict (unvalidated: the curation validate step checks it)."""
    rec: dict[str, Any] = {
        "kind": "conversation",
        "id": f"{source}:{row}" if row is not None else source,
        "messages": messages,
        "provenance": {
            "source": source,
            "source_file": source_file,
            "row": row,
            "license": license or UNKNOWN_LICENSE,
            "sha256": "",
            "tags": list(tags or []),
        },
    }
    if meta:
        rec["meta"] = dict(meta)
    _fill_hash(rec)
    return rec


def make_preference(
    prompt: list[dict[str, str]],
    chosen: str,
    rejected: str,
    *,
    source: str,
    source_file: str | None,
    row: int | None,
    license: str | None,
    tags: list[str] | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "kind": "preference",
        "id": f"{source}:{row}" if row is not None else source,
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "provenance": {
            "source": source,
            "source_file": source_file,
            "row": row,
            "license": license or UNKNOWN_LICENSE,
            "sha256": "",
            "tags": list(tags or []),
        },
    }
    if meta:
        rec["meta"] = dict(meta)
    _fill_hash(rec)
    return rec


def _fill_hash(rec: dict[str, Any]) -> None:
    try:
        rec["provenance"]["sha256"] = content_hash(rec)
    except (KeyError, TypeError, AttributeError, UnicodeEncodeError):
        # Malformed content: leave the hash empty; validation rejects the record with a reason.
        rec["provenance"]["sha256"] = ""


def parse_record(data: dict[str, Any]) -> Record:
    """Validate a dict as a record (raises pydantic.ValidationError naming the bad field)."""
    if data.get("kind") == "preference":
        return PreferenceRecord.model_validate(data)
    return ConversationRecord.model_validate(data)


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any] | BaseModel]) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            if isinstance(row, BaseModel):
                row = row.model_dump(mode="json")
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def iter_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSONL file; raises ValueError naming file:line on a bad line."""
    for _, obj in iter_jsonl_numbered(path):
        yield obj


def iter_jsonl_numbered(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number in the file, object) pairs: blank lines are skipped but still counted, so
    error messages can name the real line."""
    path = Path(path)
    with path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def read_records(path: str | Path) -> list[Record]:
    """Load and validate a records JSONL file."""
    out: list[Record] = []
    for i, obj in enumerate(iter_jsonl(path), 1):
        try:
            out.append(parse_record(obj))
        except Exception as exc:  # pydantic.ValidationError; re-raised with the location
            raise ValueError(f"{path}: record {i}: {exc}") from None
    return out


def to_hf_dataset(records: Iterable[Record | dict[str, Any]]):
    """Records as a ``datasets.Dataset`` (provenance flattened into a nested column)."""
    import datasets

    rows = [r.model_dump(mode="json") if isinstance(r, BaseModel) else r for r in records]
    return datasets.Dataset.from_list(rows)


def load_dataset(path: str | Path):
    """A records JSONL file as a validated ``datasets.Dataset``."""
    return to_hf_dataset(read_records(path))
