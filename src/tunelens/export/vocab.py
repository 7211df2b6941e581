"""The tokenizer part of a GGUF file: llama.cpp's ``tokenizer.*`` keys for a transformers tokenizer.

Where the model's tokenizer came from a GGUF file (the embedded SmolLM2 and everything built on
it), that file's tokenizer keys are copied as they are (token list, token types, merges,
``tokenizer.ggml.pre``), after checking that its token list is the tokenizer's vocabulary. Otherwise
they are built the way llama.cpp's ``convert_hf_to_gguf.py`` builds them for a byte-level BPE
vocabulary (``tokenizer.ggml.model = gpt2``), with the pre-tokenizer named by llama.cpp's hash of
a fixed probe text or, failing that, by the shape of the tokenizer's own pre-tokenizer. The special
token ids, the BOS/EOS flags and the chat template always come from the transformers tokenizer,
which is the one tunelens trained and evaluated with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from hashlib import sha256
from pathlib import Path
from typing import Any

from tunelens.errors import TunelensError

# llama.cpp (convert_hf_to_gguf.py, get_vocab_base_pre) encodes this text and hashes the token ids
# to name the BPE pre-tokenizer; the hashes below are the ones it lists for these names.
_PROBE = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n\U0001f680 (normal) \U0001f636\u200d\U0001f32b\ufe0f "
    "(multiple emojis concatenated) \u2705 \U0001f999\U0001f999 3 33 333 3333 33333 333333 3333333 33333333 "
    "3.3 3..3 3...3 \u1780\u17b6\u1793\u17cb\u178f\u17c2\u1796\u17b7\u179f\u17c1\u179f\u17a2\u17b6\u1785\U0001f601 "
    "?\u6211\u60f3\u5728apple\u5de5\u4f5c1314151\u5929\uff5e ------======= "
    "\u043d\u0435\u0449\u043e \u043d\u0430 \u0411\u044a\u043b\u0433\u0430\u0440\u0441\u043a\u0438 "
    "''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, "
    "'D you like some tea? We'Ve a'lL"
)
_PRE_BY_HASH = {
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  # Meta-Llama-3
    "c136ed14d01c2745d4f60a9596ae66800e2b61fa45643e72436041855ad4089d": "smaug-bpe",
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",  # SmolLM
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",  # Qwen1.5 / Qwen2
    "63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e": "tekken",  # Mistral-Nemo
    "35d91631860c815f952d711435f48d356ebac988362536bed955d43bfa436e34": "starcoder",
}

# gguf.TokenType values (written as plain ints so this module needs no gguf import at load time).
NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5


@dataclass
class VocabMetadata:
    """Everything written under ``tokenizer.*``; ``origin`` says where the token list came from."""

    model: str
    pre: str
    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    special_ids: dict[str, int] = field(default_factory=dict)  # bos, eos, unk, pad -> id
    add_bos: bool = False
    add_eos: bool = False
    add_space_prefix: bool | None = None
    chat_template: str | None = None
    origin: str = ""

    def add_to(self, writer: Any) -> None:
        writer.add_tokenizer_model(self.model)
        writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        writer.add_token_types(self.token_types)
        if self.merges:
            writer.add_token_merges(self.merges)
        for kind, token_id in self.special_ids.items():
            getattr(writer, f"add_{kind}_token_id")(token_id)
        writer.add_add_bos_token(self.add_bos)
        writer.add_add_eos_token(self.add_eos)
        if self.add_space_prefix is not None:
            writer.add_add_space_prefix(self.add_space_prefix)
        if self.chat_template:
            writer.add_chat_template(self.chat_template)


def _backend_json(tokenizer: Any) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TunelensError(
            f"GGUF export needs a fast (tokenizers) tokenizer; {type(tokenizer).__name__} has none"
        )
    return json.loads(backend.to_str())


def _is_byte_level(spec: dict) -> bool:
    """Whether a tokenizer.json pre-tokenizer/decoder section is, or contains, ByteLevel."""
    if not spec:
        return False
    if spec.get("type") == "ByteLevel":
        return True
    return any(_is_byte_level(part) for part in spec.get("pretokenizers", spec.get("decoders", [])) or [])


def _pre_from_shape(pre_tokenizer: dict | None) -> str | None:
    """llama.cpp's name for a pre-tokenizer whose regex it implements, read from its structure."""
    if not pre_tokenizer:
        return None
    kind = pre_tokenizer.get("type")
    if kind == "ByteLevel" and pre_tokenizer.get("use_regex", True):
        return "gpt-2"  # the GPT-2 split regex, whatever the vocabulary
    if kind != "Sequence":
        return None
    parts = pre_tokenizer.get("pretokenizers") or []
    kinds = [p.get("type") for p in parts]
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits") and parts[1].get("use_regex", True):
        return "smollm"  # digits one by one, then the GPT-2 regex
    if kinds == ["Split", "ByteLevel"] and not parts[1].get("use_regex", True):
        regex = (parts[0].get("pattern") or {}).get("Regex")
        try:
            from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS as splits
        except ImportError:  # an older transformers: no table to compare with
            return None
        for name in ("llama-bpe", "qwen2", "tekken", "gpt-4o"):
            key = "llama3" if name == "llama-bpe" else name
            if splits.get(key) == regex:
                return name
    return None


def detect_pre(tokenizer: Any, backend: dict | None = None) -> str | None:
    """llama.cpp's ``tokenizer.ggml.pre`` for a byte-level BPE tokenizer, or None if unknown."""
    try:
        ids = tokenizer.encode(_PROBE)
    except Exception:  # a tokenizer that cannot encode the probe is named by its shape alone
        ids = None
    if ids is not None:
        name = _PRE_BY_HASH.get(sha256(str(ids).encode()).hexdigest())
        if name:
            return name
    backend = backend if backend is not None else _backend_json(tokenizer)
    return _pre_from_shape(backend.get("pre_tokenizer"))


def _special_ids(tokenizer: Any) -> dict[str, int]:
    out = {}
    for kind, attr in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("unk", "unk_token_id"), ("pad", "pad_token_id")):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, int):
            out[kind] = value
    return out


def _adds(tokenizer: Any) -> tuple[bool, bool]:
    """Whether encoding adds BOS / EOS (measured, not read from a config flag)."""
    with_special = tokenizer("a")["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    add_bos = bos is not None and len(with_special) > len(plain) and with_special[0] == bos
    add_eos = eos is not None and len(with_special) > len(plain) and with_special[-1] == eos
    return add_bos, add_eos


def _chat_template(tokenizer: Any) -> str | None:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default") or next(iter(template.values()), None)
    return template or None


def _hf_token_list(tokenizer: Any, vocab_size: int) -> tuple[list[str], list[int]]:
    """Token strings and types, as convert_hf_to_gguf.py's get_vocab_base writes them."""
    vocab = tokenizer.get_vocab()
    if vocab and max(vocab.values()) >= vocab_size:
        raise TunelensError(
            f"the tokenizer has token id {max(vocab.values())} but the model's embedding has only "
            f"{vocab_size} rows; the tokenizer does not belong to this model"
        )
    reverse = {i: t for t, i in vocab.items()}
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
            continue
        token = reverse[i]
        if i in added:
            info = added[i]
            if not getattr(info, "normalized", True):
                token = tokenizer.decode(tokenizer.encode(token, add_special_tokens=False))
            looks_special = token.startswith("<|") and token.endswith("|>")
            types.append(CONTROL if getattr(info, "special", False) or looks_special else USER_DEFINED)
        else:
            types.append(NORMAL)
        tokens.append(token)
    return tokens, types


def _merges(backend: dict) -> list[str]:
    merges = backend.get("model", {}).get("merges") or []
    return [m if isinstance(m, str) else " ".join(m) for m in merges]


def gguf_metadata(path: str | Path) -> dict[str, Any]:
    """A GGUF file's metadata (token list and merges included), read once per file version."""
    path = Path(path)
    st = path.stat()
    return _gguf_metadata(str(path.resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=4)
def _gguf_metadata(path: str, size: int, mtime_ns: int) -> dict[str, Any]:
    try:  # transformers' reader walks the 49k-token list ~30x faster than gguf-py's GGUFReader
        from transformers.integrations.gguf.reader import read_gguf_metadata
    except ImportError:
        read_gguf_metadata = None
    if read_gguf_metadata is not None:
        try:
            metadata, _ = read_gguf_metadata(path, ("tokenizer.ggml.tokens", "tokenizer.ggml.merges"))
            return metadata
        except Exception:  # a file that reader cannot read: gguf-py's reader says why, below
            pass
    import gguf

    return {key: f.contents() for key, f in gguf.GGUFReader(path).fields.items()}


def read_gguf_vocab(path: str | Path) -> dict[str, Any]:
    """The ``tokenizer.ggml.*`` keys of a GGUF file (token list, types, merges, pre...)."""
    metadata = gguf_metadata(path)
    prefix = "tokenizer.ggml."
    return {key[len(prefix):]: value for key, value in metadata.items() if key.startswith(prefix)}


def vocab_metadata(tokenizer: Any, vocab_size: int, *, source_gguf: Path | None = None,
                   pre: str | None = None) -> VocabMetadata:
    """The tokenizer metadata for ``tokenizer`` with ``vocab_size`` embedding rows.

    ``source_gguf``: the GGUF file this tokenizer was read from, if any; its token list, types,
    merges and pre-tokenizer name are copied when its tokens are the tokenizer's. ``pre`` overrides
    the pre-tokenizer name (for a tokenizer that llama.cpp knows under a name not detected here).
    """
    backend = _backend_json(tokenizer)
    special = _special_ids(tokenizer)
    add_bos, add_eos = _adds(tokenizer)
    template = _chat_template(tokenizer)
    common = dict(special_ids=special, add_bos=add_bos, add_eos=add_eos, chat_template=template)

    if source_gguf is not None and Path(source_gguf).is_file():
        copied = read_gguf_vocab(Path(source_gguf))
        hf_tokens, _ = _hf_token_list(tokenizer, vocab_size)
        if copied.get("tokens") == hf_tokens and copied.get("model") == "gpt2":
            return VocabMetadata(
                model="gpt2", pre=pre or copied.get("pre") or "default", tokens=list(copied["tokens"]),
                token_types=[int(t) for t in copied["token_type"]], merges=list(copied.get("merges") or []),
                add_space_prefix=copied.get("add_space_prefix"), origin=f"copied from {Path(source_gguf).name}",
                **common,
            )

    model_type = backend.get("model", {}).get("type")
    if model_type != "BPE" or not (_is_byte_level(backend.get("pre_tokenizer") or {})
                                   or _is_byte_level(backend.get("decoder") or {})):
        raise TunelensError(
            f"GGUF export supports byte-level BPE tokenizers (GPT-2, Llama 3, SmolLM, Qwen2 style); this "
            f"tokenizer is {model_type or 'unknown'}"
            + ("" if model_type != "BPE" else " without a ByteLevel pre-tokenizer (SentencePiece-style)")
        )
    name = pre or detect_pre(tokenizer, backend)
    if name is None:
        raise TunelensError(
            "cannot tell which llama.cpp pre-tokenizer this tokenizer uses (its probe hash and its "
            f"pre-tokenizer {json.dumps(backend.get('pre_tokenizer'))[:200]} match none known here); "
            "pass the llama.cpp name with --tokenizer-pre (e.g. llama-bpe, qwen2, gpt-2)"
        )
    tokens, types = _hf_token_list(tokenizer, vocab_size)
    return VocabMetadata(model="gpt2", pre=name, tokens=tokens, token_types=types, merges=_merges(backend),
                         origin="built from the transformers tokenizer", **common)
