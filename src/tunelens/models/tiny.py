"""A tiny random Llama with SmolLM2's real tokenizer: builds in seconds, for tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def _smollm2_tokenizer():
    """SmolLM2's tokenizer, cached on its own so it needs no model conversion."""
    from transformers import AutoTokenizer

    from tunelens.models.loading import cache_dir, ensure_chat_template, smollm2_gguf_path

    tok_dir = cache_dir() / "tokenizers" / "smollm2"
    if not (tok_dir / "tokenizer_config.json").is_file():
        gguf = smollm2_gguf_path()
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        ensure_chat_template(tok)
        tmp = tok_dir.with_name("smollm2.tmp")
        tok.save_pretrained(tmp)
        if tok_dir.exists():
            shutil.rmtree(tok_dir)
        tmp.rename(tok_dir)
    return AutoTokenizer.from_pretrained(str(tok_dir))


def build_tiny_random(
    out_dir: str | Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    max_position_embeddings: int = 2048,
    seed: int = 0,
) -> Path:
    """Write a tiny random Llama checkpoint (+ tokenizer) to ``out_dir`` and return it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    tokenizer = _smollm2_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "tunelens_source.json").write_text(json.dumps({"tiny_random_seed": seed}), encoding="utf-8")
    (tmp / ".tunelens-complete").write_text("ok", encoding="utf-8")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir
