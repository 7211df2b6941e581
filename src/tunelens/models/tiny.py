"""A tiny random Llama with SmolLM2's real tokenizer: builds in seconds, for tests."""

from __future__ import annotations

import json
from pathlib import Path

from tunelens.models.store import build_atomically
from tunelens.models.tokenizer import smollm2_tokenizer


# The build parameters of ``tiny-random`` (a base record keeps the ones a model was built with).
TINY_DEFAULTS = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 128,
                 "max_position_embeddings": 2048, "seed": 0}


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
    force: bool = True,
) -> Path:
    """Write a tiny random Llama checkpoint (+ tokenizer) to ``out_dir`` and return it.

    The checkpoint is written into a temporary directory and renamed into place under a lock, so
    processes building the same ``out_dir`` at once all get one complete checkpoint. With
    ``force=False`` a complete checkpoint already at ``out_dir`` is kept (the cache's use).
    """
    def build(tmp: Path) -> None:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        tokenizer = smollm2_tokenizer()
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
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        params = {"hidden_size": hidden_size, "num_layers": num_layers, "num_heads": num_heads,
                  "num_kv_heads": num_kv_heads, "intermediate_size": intermediate_size,
                  "max_position_embeddings": max_position_embeddings, "seed": seed}
        (tmp / "tunelens_source.json").write_text(json.dumps({"tiny_random_seed": seed, "tiny_random": params}),
                                                  encoding="utf-8")

    return build_atomically(Path(out_dir), build, force=force, what="the tiny-random model")
