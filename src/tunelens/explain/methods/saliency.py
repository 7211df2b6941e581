"""Saliency (Simonyan et al. 2014, "Deep inside convolutional networks"): how sensitive each response
token's log-probability is to each prompt token's embedding.

``matrix[j, i] = || d log p(y_j | prompt, y_<j) / d e_i ||_2``: the L2 norm of the gradient over
the hidden dimension, as Inseq's ``saliency`` reports it. Non-negative; unlike input x gradient it
ignores the embedding itself, so it measures sensitivity, not contribution. Same cost as input x
gradient: one forward pass and one vmapped backward for all response tokens.
"""

from __future__ import annotations

from typing import Any

from tunelens.explain.methods._base import Option, register


@register(
    "saliency",
    summary="L2 norm of the gradient w.r.t. each prompt token's embedding (Simonyan et al.); non-negative",
    options={
        "target_chunk": Option("response tokens per vmapped backward pass (32)"),
        "target": Option("'token' (one row per response token) or 'response' (one row: the whole response's "
                         "summed log-probability, one backward pass, about R times cheaper)", default="token"),
    },
)
def compute(model: Any, tokenizer: Any, enc: Any, **options: Any) -> Any:
    from tunelens.explain.gradients import gradient_matrix

    return gradient_matrix(model, enc.input_ids, enc.output_ids, lambda grads, emb: grads.norm(dim=-1), **options)
