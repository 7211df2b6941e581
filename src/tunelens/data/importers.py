"""Importers: files or hub datasets -> canonical record dicts, never crashing on a bad row.

Formats (auto-detected from the first row's fields; ``fmt`` overrides):

- ``records``: canonical tunelens records JSONL;
- ``alpaca``: instruction / input / output (JSON array or JSONL);
- ``sharegpt``: ``conversations`` = [{from, value}];
- ``openai``: ``messages`` = [{role, content}];
- ``gsm8k``: question / answer;
- ``hh-rlhf``: ``chosen`` / ``rejected`` transcripts of ``\\n\\nHuman:`` / ``\\n\\nAssistant:`` turns
  (gzipped or not) -> preference pairs;
- ``preference``: prompt / chosen / rejected (strings or message lists);
- ``generic``: any CSV / TSV / JSONL / JSON / Parquet with a ``column_map`` naming the columns for
  ``prompt`` and ``response`` (optional ``system``), or ``prompt`` / ``chosen`` / ``rejected``.

``column_map`` maps a canonical field to a source column (e.g. ``{"prompt": "question"}``) and
also works with the named formats (e.g. Alpaca files with other column names).
Rows that cannot be converted become :class:`Malformed` entries (location ``file:line`` and a
reason); type problems inside a row are left for the curation validate step to reject.
``hf:org/name[:split]`` loads a hub dataset through ``datasets.load_dataset``.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelens.data.licences import check_license_id
from tunelens.errors import ConfigError, TunelensError
from tunelens.records import UNKNOWN_LICENSE, make_conversation, make_preference

FORMATS = ("records", "alpaca", "sharegpt", "openai", "gsm8k", "hh-rlhf", "preference", "generic")
ON_ERROR = ("reject", "fail")


@dataclass
class Malformed:
    """A source row that could not become a record."""

    location: str  # "file:line", "file:item N" or "hf:name:row N"
    reason: str
    raw: Any = None

    def as_reject(self) -> dict[str, Any]:
        return {"step": "import", "reason": self.reason, "location": self.location, "raw": self.raw}


@dataclass
class ImportResult:
    records: list[dict[str, Any]]
    malformed: list[Malformed] = field(default_factory=list)
    locations: list[str] = field(default_factory=list)  # "file:line" of each record, parallel to records
    source: str = ""
    source_file: str = ""
    fmt: str = ""

    @property
    def total(self) -> int:
        return len(self.records) + len(self.malformed)


class _RowError(Exception):
    """A row-level problem: the row becomes a Malformed entry (``raw`` keeps the source text)."""

    def __init__(self, reason: str, raw: Any = None) -> None:
        super().__init__(reason)
        self.raw = raw


# --------------------------------------------------------------------------- reading rows

Row = tuple[str, Any]  # (location, parsed row or a _RowError)


def _open_text(path: Path) -> io.TextIOBase:
    # surrogateescape: a stray invalid byte becomes a lone surrogate in that row's text, which the
    # validate step rejects ("invalid UTF-8") instead of one bad byte stopping the whole file.
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")


def _base_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _iter_jsonl(path: Path) -> Iterator[Row]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            loc = f"{path}:{lineno}"
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield loc, _RowError(f"invalid UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1})",
                                     line.decode("utf-8", "replace").rstrip("\r\n"))
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                yield loc, _RowError(f"invalid JSON ({exc.msg} at column {exc.colno})", text.rstrip("\r\n"))
                continue
            yield loc, obj


def _iter_json(path: Path) -> Iterator[Row]:
    try:
        with _open_text(path) as fh:
            doc = json.load(fh)
    except UnicodeDecodeError as exc:
        raise TunelensError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise TunelensError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if isinstance(doc, dict):
        lists = [k for k, v in doc.items() if isinstance(v, list)]
        if len(lists) != 1:
            raise TunelensError(f"{path}: expected a JSON array of rows (or an object with one list of rows)")
        doc = doc[lists[0]]
    if not isinstance(doc, list):
        raise TunelensError(f"{path}: expected a JSON array of rows, got {type(doc).__name__}")
    for i, row in enumerate(doc):
        yield f"{path}:item {i}", row


def _iter_csv(path: Path) -> Iterator[Row]:
    delimiter = "\t" if _base_suffix(path) == ".tsv" else ","
    try:
        with _open_text(path) as fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            if not reader.fieldnames:
                raise TunelensError(f"{path}: empty CSV file (no header row)")
            for row in reader:
                loc = f"{path}:{reader.line_num}"
                if None in row:
                    yield loc, _RowError(f"{len(row[None])} more field(s) than the header has", row)
                    continue
                if any(v is None for v in row.values()):
                    yield loc, _RowError("fewer fields than the header has", row)
                    continue
                yield loc, row
    except UnicodeDecodeError as exc:
        raise TunelensError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise TunelensError(f"{path}: CSV error: {exc}") from None


def _iter_parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise TunelensError(f"{path}: cannot read Parquet: {exc}") from None
    for i, row in enumerate(table.to_pylist()):
        yield f"{path}:row {i}", row


def _file_rows(path: Path) -> Iterator[Row]:
    suffix = _base_suffix(path)
    if suffix in (".jsonl", ".ndjson"):
        return _iter_jsonl(path)
    if suffix == ".json":
        # A .json file may still hold JSON lines: decide from the first non-blank character.
        with (gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")) as fh:
            head = fh.read(4096).lstrip()
        return _iter_json(path) if head[:1] in (b"[", b"") or _single_document(path) else _iter_jsonl(path)
    if suffix in (".csv", ".tsv"):
        return _iter_csv(path)
    if suffix == ".parquet":
        return _iter_parquet(path)
    raise TunelensError(f"{path}: unknown file type {suffix or '(no extension)'!r}; expected .json, .jsonl, .csv, .tsv or .parquet (optionally .gz)")


def _single_document(path: Path) -> bool:
    """True if a .json file starting with '{' is one JSON document (not JSON lines)."""
    with (gzip.open(path, "rt", encoding="utf-8", errors="replace") if path.suffix == ".gz" else path.open(encoding="utf-8", errors="replace")) as fh:
        first = fh.readline()
    try:
        json.loads(first)
    except json.JSONDecodeError:
        return True
    return False


# --------------------------------------------------------------------------- format detection


def detect_format(columns: set[str]) -> str | None:
    """The format implied by a row's field names, or None."""
    if {"kind", "provenance"} <= columns:
        return "records"
    if "messages" in columns:
        return "openai"
    if "conversations" in columns:
        return "sharegpt"
    if {"instruction", "output"} <= columns:
        return "alpaca"
    if {"question", "answer"} <= columns:
        return "gsm8k"
    if {"prompt", "chosen", "rejected"} <= columns:
        return "preference"
    if {"chosen", "rejected"} <= columns:
        return "hh-rlhf"
    if {"prompt", "response"} <= columns:
        return "generic"
    return None


# --------------------------------------------------------------------------- row converters

_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "chatgpt": "assistant", "bard": "assistant", "bing": "assistant", "model": "assistant",
                   "system": "system"}
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ?")


def _need(row: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if n not in row]
    if missing:
        raise _RowError(f"missing field(s) {missing}; the row has {sorted(row)}")


def _alpaca(row):
    _need(row, "instruction", "output")
    instruction, context = row["instruction"], row.get("input") or ""
    meta: dict[str, Any] = {}
    if isinstance(instruction, str) and isinstance(context, str):
        user = f"{instruction}\n\n{context}" if context.strip() else instruction
        meta["spans"] = {"instruction": [0, len(instruction)]}
        if context.strip():
            meta["spans"]["input"] = [len(instruction) + 2, len(user)]
    else:
        user = instruction if not isinstance(instruction, str) else context  # non-string: validation rejects it
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
    if row.get("system"):
        messages.insert(0, {"role": "system", "content": row["system"]})
    return "conversation", messages, meta


def _sharegpt(row):
    _need(row, "conversations")
    turns = row["conversations"]
    if not isinstance(turns, list):
        raise _RowError(f"'conversations' must be a list, got {type(turns).__name__}")
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise _RowError(f"conversations[{i}] must be an object with 'from' and 'value'")
        role = _SHAREGPT_ROLES.get(str(turn["from"]).lower(), turn["from"])  # unknown roles: validation rejects
        messages.append({"role": role, "content": turn["value"]})
    if row.get("system"):
        messages.insert(0, {"role": "system", "content": row["system"]})
    return "conversation", messages, {}


def _content_text(content: Any) -> Any:
    """OpenAI content may be a list of parts; text parts are joined, anything else left for validation."""
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    return content


def _openai(row):
    _need(row, "messages")
    msgs = row["messages"]
    if not isinstance(msgs, list):
        raise _RowError(f"'messages' must be a list, got {type(msgs).__name__}")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or "role" not in m:
            raise _RowError(f"messages[{i}] must be an object with 'role' and 'content'")
        out.append({"role": m["role"], "content": _content_text(m.get("content"))})
    return "conversation", out, {}


def _gsm8k(row):
    _need(row, "question", "answer")
    meta = {}
    if isinstance(row["answer"], str) and "####" in row["answer"]:
        meta["final_answer"] = row["answer"].rsplit("####", 1)[1].strip()
    return "conversation", [{"role": "user", "content": row["question"]}, {"role": "assistant", "content": row["answer"]}], meta


def parse_hh_transcript(text: str) -> list[dict[str, str]]:
    """'\\n\\nHuman: ...\\n\\nAssistant: ...' -> messages."""
    if not isinstance(text, str):
        raise _RowError(f"transcript must be a string, got {type(text).__name__}")
    parts = _HH_TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        raise _RowError("transcript does not start with '\\n\\nHuman:'")
    return [{"role": "user" if who == "Human" else "assistant", "content": body.strip()}
            for who, body in zip(parts[1::2], parts[2::2])]


def _hh_rlhf(row):
    _need(row, "chosen", "rejected")
    chosen, rejected = parse_hh_transcript(row["chosen"]), parse_hh_transcript(row["rejected"])
    if chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        raise _RowError("a transcript does not end with an Assistant turn")
    if chosen[:-1] != rejected[:-1]:
        raise _RowError("chosen and rejected transcripts differ before the final Assistant turn")
    return "preference", (chosen[:-1], chosen[-1]["content"], rejected[-1]["content"]), {}


def _reply(value: Any) -> Any:
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return value[-1].get("content")
    return value


def _preference(row):
    _need(row, "prompt", "chosen", "rejected")
    prompt = row["prompt"]
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    elif not isinstance(prompt, list):
        raise _RowError(f"'prompt' must be a string or a list of messages, got {type(prompt).__name__}")
    return "preference", (prompt, _reply(row["chosen"]), _reply(row["rejected"])), {}


def _generic(row):
    if {"chosen", "rejected"} <= set(row):
        return _preference(row)
    _need(row, "prompt", "response")
    messages = [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["response"]}]
    if row.get("system"):
        messages.insert(0, {"role": "system", "content": row["system"]})
    return "conversation", messages, {}


_CONVERTERS: dict[str, Callable[[dict[str, Any]], tuple[str, Any, dict[str, Any]]]] = {
    "alpaca": _alpaca, "sharegpt": _sharegpt, "openai": _openai, "gsm8k": _gsm8k,
    "hh-rlhf": _hh_rlhf, "preference": _preference, "generic": _generic,
}


# --------------------------------------------------------------------------- public API


def parse_column_map(text: str | None) -> dict[str, str] | None:
    """'prompt=question,response=answer' -> {'prompt': 'question', 'response': 'answer'}."""
    if not text:
        return None
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"--column-map: {part!r} is not FIELD=COLUMN (e.g. prompt=question,response=answer)")
        out[key.strip()] = value.strip()
    return out


def _source_name(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name or path.name


def _hub_rows(spec: str) -> tuple[str, str, Iterator[Row]]:
    name, _, split = spec[3:].partition(":")
    split = split or "train"
    if not name:
        raise TunelensError(f"{spec!r}: expected hf:org/name[:split]")
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # offline, missing, gated, bad split...
        from huggingface_hub import constants

        offline = " (offline mode: HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set)" if constants.HF_HUB_OFFLINE else ""
        raise TunelensError(
            f"cannot load hub dataset {name!r} split {split!r}{offline}: {type(exc).__name__}: {exc}. "
            "Download it first or pass a local file."
        ) from None
    return name.split("/")[-1], f"hf:{name}:{split}", ((f"hf:{name}:{split}:row {i}", row) for i, row in enumerate(ds))


def load_records(
    path_or_hubid: str | Path,
    fmt: str | None = None,
    license: str | None = None,
    source: str | None = None,
    column_map: dict[str, str] | None = None,
    on_error: str = "reject",
) -> ImportResult:
    """Import a file (or ``hf:org/name[:split]``) as canonical record dicts.

    ``license`` (SPDX id) is set on every record; for ``records`` files it only fills records
    whose licence is ``unknown``. Without it the licence is ``unknown``: never guessed.
    ``on_error='fail'`` raises :class:`TunelensError` at the first malformed row (naming
    file:line and the reason); ``'reject'`` collects it in ``ImportResult.malformed``.
    """
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    license = check_license_id(license)
    spec = str(path_or_hubid)
    if spec.startswith("hf:"):
        default_source, source_file, rows = _hub_rows(spec)
    else:
        path = Path(spec)
        if not path.exists():
            raise TunelensError(f"{path}: no such file")
        if path.is_dir():
            raise TunelensError(f"{path}: is a directory, expected a data file")
        try:
            path.open("rb").close()
        except OSError as exc:
            raise TunelensError(f"{path}: cannot read ({exc.strerror})") from None
        default_source, source_file, rows = _source_name(path), str(path), _file_rows(path)
    source = source or default_source
    result = ImportResult(records=[], source=source, source_file=source_file, fmt=fmt or "")
    reverse_map = {v: k for k, v in (column_map or {}).items()}
    try:
        head = list(itertools.islice(rows, _PEEK_ROWS))
        if column_map:
            _check_column_map(column_map, head, source_file)
        if not result.fmt:
            result.fmt = _detect_from_rows(head, reverse_map, source_file, column_map)
        for row_index, (location, row) in enumerate(itertools.chain(head, rows)):
            try:
                if isinstance(row, _RowError):
                    raise row
                if not isinstance(row, dict):
                    raise _RowError(f"expected an object, got {type(row).__name__}")
                if reverse_map:
                    row = {reverse_map.get(k, k): v for k, v in row.items()}
                result.records.append(_convert(result.fmt, row, source, source_file, row_index, license))
                result.locations.append(location)
            except _RowError as exc:
                bad = Malformed(location, str(exc), row.raw if isinstance(row, _RowError) else row)
                if on_error == "fail":
                    raise TunelensError(f"{location}: {bad.reason}") from None
                result.malformed.append(bad)
    except (OSError, EOFError, zlib.error) as exc:  # e.g. a truncated or corrupt gzip stream
        raise TunelensError(f"{source_file}: read error: {exc}") from None
    return result


_PEEK_ROWS = 100  # rows read ahead to detect the format and check a column map


def _detect_from_rows(head: list[Row], reverse_map: dict[str, str], source_file: str, column_map) -> str:
    """The most common format among the first rows (so one odd first row cannot decide it)."""
    votes: Counter[str] = Counter()
    first_columns = None
    for _, row in head:
        if isinstance(row, dict):
            columns = {reverse_map.get(k, k) for k in row}
            first_columns = first_columns if first_columns is not None else sorted(columns)
            found = detect_format(columns)
            if found:
                votes[found] += 1
    if votes:
        return votes.most_common(1)[0][0]
    if first_columns is None:
        raise TunelensError(f"{source_file}: no JSON object / table row in the first {len(head)} rows; nothing to import")
    hint = "pass --format and --column-map" if not column_map else "pass --format"
    raise TunelensError(f"{source_file}: cannot detect the format from the columns {first_columns}; {hint}")


def _check_column_map(column_map: dict[str, str], head: list[Row], source_file: str) -> None:
    """A mapped column found in none of the first rows is a wrong mapping, not a bad row."""
    seen: set[str] = set()
    for _, row in head:
        if isinstance(row, dict):
            seen.update(row)
    if not seen:
        return
    missing = {field: col for field, col in column_map.items() if col not in seen}
    if missing:
        pairs = ", ".join(f"{f}={c!r}" for f, c in missing.items())
        raise TunelensError(f"{source_file}: column map {pairs}: no such column; the columns are {sorted(seen)}")


def _convert(fmt: str, row: dict[str, Any], source: str, source_file: str, row_index: int, license: str | None):
    if fmt == "records":
        record = dict(row)
        prov = record.get("provenance")
        if license and isinstance(prov, dict) and prov.get("license", UNKNOWN_LICENSE) == UNKNOWN_LICENSE:
            record["provenance"] = {**prov, "license": license}
        return record
    kind, payload, meta = _CONVERTERS[fmt](row)
    common = dict(source=source, source_file=source_file, row=row_index, license=license, meta=meta or None)
    try:
        if kind == "preference":
            prompt, chosen, rejected = payload
            return make_preference(prompt, chosen, rejected, **common)
        return make_conversation(payload, **common)
    except UnicodeEncodeError:
        # Lone surrogates (JSON "\ud800" escapes) cannot be hashed; build the record without a hash
        # so that the validate step rejects it with an "invalid UTF-8" reason instead of crashing.
        return _unhashable_record(kind, payload, common)


def _unhashable_record(kind: str, payload: Any, common: dict[str, Any]) -> dict[str, Any]:
    prov = {"source": common["source"], "source_file": common["source_file"], "row": common["row"],
            "license": common["license"] or UNKNOWN_LICENSE, "sha256": "", "tags": []}
    rec: dict[str, Any] = {"kind": kind, "id": f"{common['source']}:{common['row']}"}
    if kind == "preference":
        rec.update(prompt=payload[0], chosen=payload[1], rejected=payload[2])
    else:
        rec["messages"] = payload
    rec["provenance"] = prov
    if common.get("meta"):
        rec["meta"] = common["meta"]
    return rec
