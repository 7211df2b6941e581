"""The saliency method (gradient L2 norm per prompt token), added through the method registry alone.

The planted-trigger test (test_explain_planted.py) runs it too: it is parametrised over METHODS.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tunelens.explain import METHODS, attribute, methods

from _numerics import assert_close_relative

# Tiny models: one torch thread is faster and does not spin on a busy 2-core machine.
pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.numeric]


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    from _toy import shared_model

    return shared_model(str(tiny_model_path))


def test_saliency_is_registered():
    assert "saliency" in METHODS
    assert methods.get("saliency").options.keys() == {"target_chunk", "target"}


def test_saliency_is_the_gradient_norm_of_each_target(tiny):
    messages = [{"role": "user", "content": "List two fruits."}]
    attr = attribute(tiny.model, tiny.tokenizer, messages, "Apples and pears.", "saliency", target_chunk=3)
    assert attr.method == "saliency" and attr.params == {"target_chunk": 3, "target": "token"}
    n_in, n_out = len(attr.input_tokens), len(attr.output_tokens)
    assert attr.matrix.shape == (n_out, n_in) and np.all(attr.matrix >= 0)
    ids = attr.input_ids + attr.output_ids
    emb = tiny.model.get_input_embeddings()(torch.tensor([ids])).detach().requires_grad_(True)
    p = len(attr.input_ids)
    reference = []
    for j, target in enumerate(attr.output_ids):
        logp = tiny.model(inputs_embeds=emb, use_cache=False).logits[0, p - 1 + j].log_softmax(-1)[target]
        (grad,) = torch.autograd.grad(logp, emb)
        reference.append(grad[0, :p].norm(dim=-1).detach().numpy())
    # One batched backward over all targets vs one plain backward per target: the same sums blocked
    # differently by MKL, so fp32 rounding of ~1e-6 of the gradients' size; 1e-4 of that size still
    # fails a wrong target position or an input-times-gradient product (entries change by their own size).
    assert_close_relative(attr.matrix, np.stack(reference), rel=1e-4, what="batched vs per-target saliency")
    ixg = attribute(tiny.model, tiny.tokenizer, messages, "Apples and pears.", "input_x_gradient")
    assert not np.allclose(ixg.matrix, attr.matrix, rtol=0.1)  # not input x gradient under another name
