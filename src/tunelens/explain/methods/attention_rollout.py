"""Attention rollout (Abnar & Zuidema 2020): a cheap, gradient-free reference."""

from __future__ import annotations

from typing import Any

from tunelens.explain.methods._base import register


@register(
    "attention_rollout",
    aliases=("rollout",),
    summary="head-mean attention mixed with the residual, multiplied over layers (no gradients; eager attention)",
)
def compute(model: Any, tokenizer: Any, enc: Any) -> Any:
    from tunelens.explain.rollout import attention_rollout

    return attention_rollout(model, enc.input_ids, enc.output_ids)
