"""Integrated gradients: the path integral of the gradient from a baseline to the prompt embeddings."""

from __future__ import annotations

from typing import Any

from tunelens.explain.methods._base import Option, register


@register(
    "integrated_gradients",
    aliases=("ig",),
    summary="path integral of the gradient from a baseline to the prompt embeddings, times the difference; signed",
    options={
        "steps": Option("interpolation steps", default=16),
        "baseline": Option("'mean' (vocabulary-mean embedding), 'pad', 'zero', or a token id", default="mean"),
        "approximation": Option("captum's quadrature rule", default="gausslegendre"),
        "step_batch": Option("interpolation steps per forward pass (16)"),
        "target_chunk": Option("response tokens per vmapped backward pass (32)"),
        "target": Option("'token' (one row per response token) or 'response' (one row: the whole response's "
                         "summed log-probability, one backward pass, about R times cheaper)", default="token"),
        "progress": Option("callback called with the number of steps done", recorded=False),
    },
)
def compute(model: Any, tokenizer: Any, enc: Any, **options: Any) -> Any:
    from tunelens.explain.gradients import integrated_gradients

    return integrated_gradients(model, enc.input_ids, enc.output_ids, tokenizer=tokenizer, **options)
