"""Input x gradient (the default method): embedding * d log p(y_j) / d embedding, per prompt token."""

from __future__ import annotations

from typing import Any

from tunelens.explain.methods._base import Option, register


@register(
    "input_x_gradient",
    aliases=("ixg",),
    summary="embedding x gradient per prompt token: L2 norm over the hidden dimension, or signed with reduce='sum'",
    options={
        "reduce": Option("'norm' (non-negative magnitude, as in Inseq) or 'sum' (signed dot product)", default="norm"),
        "target_chunk": Option("response tokens per vmapped backward pass (32)"),
        "target": Option("'token' (one row per response token) or 'response' (one row: the whole response's "
                         "summed log-probability, one backward pass, about R times cheaper)", default="token"),
    },
)
def compute(model: Any, tokenizer: Any, enc: Any, **options: Any) -> Any:
    from tunelens.explain.gradients import input_x_gradient

    return input_x_gradient(model, enc.input_ids, enc.output_ids, **options)
