"""Attention rollout (Abnar & Zuidema 2020): a cheap, gradient-free reference.

Per layer the head-averaged attention is mixed with the identity (the residual stream),
rows renormalised, and the layers multiplied; the row of the position that predicts y_j gives
that output token's attribution over the prompt. Needs attention weights, so the model is
switched to the eager attention implementation for the call when it uses SDPA/flash.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from tunelens.errors import TunelensError
from tunelens.explain.scoring import device_of, frozen


@contextlib.contextmanager
def eager_attention(model: Any) -> Iterator[None]:
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if current in (None, "eager"):
        yield
        return
    setter = getattr(model, "set_attn_implementation", None)
    if setter is None:
        raise TunelensError(
            f"attention rollout needs attention weights, but this model uses {current!r} attention and "
            "cannot switch to 'eager'; load it with attn_implementation='eager'"
        )
    try:
        setter("eager")
    except Exception as exc:  # model classes without an eager path
        raise TunelensError(f"attention rollout: cannot switch the model from {current!r} to eager attention: {exc}") from exc
    try:
        yield
    finally:
        setter(current)


def attention_rollout(model: Any, input_ids: list[int], output_ids: list[int]) -> np.ndarray:
    import torch

    p, r = len(input_ids), len(output_ids)
    ids = torch.tensor([input_ids + output_ids], device=device_of(model))
    with frozen(model), eager_attention(model), torch.no_grad():
        try:
            out = model(input_ids=ids, output_attentions=True, use_cache=False)
        except (ValueError, NotImplementedError) as exc:
            raise TunelensError(f"attention rollout: the model cannot return attention weights: {exc}") from exc
    attentions = getattr(out, "attentions", None)
    if not attentions or any(a is None for a in attentions):
        raise TunelensError(
            "attention rollout: the model returned no attention weights (its attention implementation "
            "does not expose them); load it with attn_implementation='eager'"
        )
    n = ids.shape[1]
    eye = torch.eye(n, dtype=torch.float64)
    rollout = eye.clone()
    for layer in attentions:
        a = layer[0].double().mean(0).cpu()  # heads averaged, (n, n)
        a = 0.5 * a + 0.5 * eye
        a = a / a.sum(-1, keepdim=True)
        rollout = a @ rollout
    return rollout[p - 1 : p - 1 + r, :p].numpy()
