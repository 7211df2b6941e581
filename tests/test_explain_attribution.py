"""Attribution shapes, sums and errors: the batched methods against slow references."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from tunelens.errors import TunelensError
from tunelens.explain import Attribution, attribute
from tunelens.explain.encoding import encode
from tunelens.explain.occlusion import word_segments

from _numerics import assert_close_relative
from _toy import one_thread, trigger_example

# Tiny models: one torch thread is faster and does not spin on a busy 2-core machine.
pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.numeric]


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    from _toy import shared_model

    return shared_model(str(tiny_model_path))


def test_shapes_template_mask_and_round_trip(tiny):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    attr = attribute(tiny.model, tiny.tokenizer, messages, "Paris is the capital.", "input_x_gradient")
    n_in, n_out = len(attr.input_tokens), len(attr.output_tokens)
    assert attr.matrix.shape == (n_out, n_in) and attr.aggregate.shape == (n_in,)
    assert "".join(attr.output_tokens) == "Paris is the capital."
    # The SmolLM2 template injects a default system prompt: template tokens, not the user's words.
    content = "".join(t for t, m in zip(attr.input_tokens, attr.template_mask) if not m)
    assert content == messages[0]["content"]
    assert "".join(attr.input_tokens) == attr.prompt_text
    # The aggregate is this column sum, taken in fp32 by the code and in float64 here: a few ulps.
    assert_close_relative(attr.aggregate, attr.matrix.sum(0), rel=1e-5, what="aggregate")
    excluded = attr.with_template_excluded()
    assert np.all(excluded.aggregate[np.array(attr.template_mask)] == 0)
    back = Attribution.from_dict(json.loads(json.dumps(attr.to_dict())))
    assert back.input_tokens == attr.input_tokens and back.template_mask == attr.template_mask
    # to_dict() stores 7 decimals: a round trip moves an entry by at most 5e-8 (an absolute bound).
    assert np.allclose(back.matrix, attr.matrix, rtol=0, atol=1e-6)


def _logp(model, embeds, n_prompt, output_ids):
    logits = model(inputs_embeds=embeds, use_cache=False).logits[0, n_prompt - 1 : -1].log_softmax(-1)
    return logits[torch.arange(len(output_ids)), torch.tensor(output_ids)]


def test_input_x_gradient_batched_equals_one_backward_per_target(tiny):
    messages = [{"role": "user", "content": "List two fruits."}]
    attr = attribute(tiny.model, tiny.tokenizer, messages, "Apples and pears.", "input_x_gradient", reduce="sum", target_chunk=3)
    ids = attr.input_ids + attr.output_ids
    emb = tiny.model.get_input_embeddings()(torch.tensor([ids])).detach().requires_grad_(True)
    p = len(attr.input_ids)
    reference = []
    for j in range(len(attr.output_ids)):
        (grad,) = torch.autograd.grad(_logp(tiny.model, emb, p, attr.output_ids)[j], emb)
        reference.append((grad[0, :p] * emb[0, :p]).sum(-1).detach().numpy())
    # One batched backward over all targets vs one per target: the same sums with other matrix
    # shapes, so MKL blocks them differently. fp32 rounding of a 64-wide model is ~1e-6 of the
    # attributions' size (observed below 1e-7); 1e-4 of that size still fails a wrong target or
    # a missing input-times-gradient product, which change entries by their own magnitude.
    assert_close_relative(attr.matrix, np.stack(reference), rel=1e-4, what="batched vs per-target")


def test_response_target_is_the_gradient_of_the_summed_log_prob(tiny):
    """target='response': one row, equal to the sum of the per-token rows for the signed (linear) reduction."""
    messages = [{"role": "user", "content": "List two fruits."}]
    per_token = attribute(tiny.model, tiny.tokenizer, messages, "Apples and pears.", "input_x_gradient", reduce="sum")
    whole = attribute(tiny.model, tiny.tokenizer, messages, "Apples and pears.", "input_x_gradient", reduce="sum",
                      target="response")
    assert whole.matrix.shape == (1, len(whole.input_tokens)) and whole.output_tokens == ["(whole response)"]
    assert whole.output_ids == per_token.output_ids and whole.params["target"] == "response"
    # The gradient is linear in its target: d(sum_j log p_j) = sum_j d log p_j. Same fp32 sums in
    # another order: rounding ~1e-6 of the entries' size; a wrong target (one token, or the
    # L2 norm) moves entries by their own magnitude.
    assert_close_relative(whole.matrix[0], per_token.matrix.sum(0), rel=1e-4, what="response row vs token rows")
    # The norm reduction is not linear: the response row's norm is at most the sum of the rows' norms.
    norm_tok = attribute(tiny.model, tiny.tokenizer, messages, "Apples and pears.", "saliency")
    norm_all = attribute(tiny.model, tiny.tokenizer, messages, "Apples and pears.", "saliency", target="response")
    assert np.all(norm_all.matrix[0] <= norm_tok.matrix.sum(0) * (1 + 1e-4) + 1e-12)
    back = Attribution.from_dict(json.loads(json.dumps(whole.to_dict())))
    assert back.matrix.shape == (1, len(whole.input_tokens))
    ig = attribute(tiny.model, tiny.tokenizer, messages, "Apples and pears.", "integrated_gradients", steps=4,
                   target="response")
    ig_tok = attribute(tiny.model, tiny.tokenizer, messages, "Apples and pears.", "integrated_gradients", steps=4)
    assert_close_relative(ig.matrix[0], ig_tok.matrix.sum(0), rel=1e-4, what="IG response row vs token rows")
    with pytest.raises(TunelensError, match="target"):
        attribute(tiny.model, tiny.tokenizer, messages, "Apples and pears.", "input_x_gradient", target="sentence")


def test_integrated_gradients_rows_are_complete(trigger_model):
    """Each row sums to log p(y_j | prompt) - log p(y_j | every prompt token replaced by the mean embedding), the default baseline."""
    model, tok = trigger_model
    messages, answer, _ = trigger_example(random.Random(3))
    with one_thread():
        attr = attribute(model, tok, messages, answer + " " + answer, "integrated_gradients", steps=48, step_batch=16)
        ids = attr.input_ids + attr.output_ids
        p = len(attr.input_ids)
        emb = model.get_input_embeddings()(torch.tensor([ids])).detach()
        base = emb.clone()
        base[:, :p] = model.get_input_embeddings().weight.mean(0)
        with torch.no_grad():
            expected = (_logp(model, emb, p, attr.output_ids) - _logp(model, base, p, attr.output_ids)).numpy()
    assert attr.matrix.shape == (2, p)
    # Not rounding: the 48-step Riemann sum's discretisation error (completeness is exact only in
    # the limit). 3% + 0.05 nats of log-probability differences of several nats.
    assert np.allclose(attr.matrix.sum(1), expected, rtol=0.03, atol=0.05), (attr.matrix.sum(1), expected)


def test_occlusion_segment_sums_equal_the_deletion_drop(trigger_model):
    model, tok = trigger_model
    messages, answer, trigger = trigger_example(random.Random(4))
    with one_thread():
        attr = attribute(model, tok, messages, answer, "occlusion")
        enc = encode(tok, messages, answer, model)
        segments = word_segments(enc)
        # Word-level tokenizer: every content word is its own segment.
        content_segments = [s for s in segments if enc.token_message[s[0]] >= 0]
        assert [len(s) for s in content_segments] == [1] * len(messages[0]["content"].split())
        pos = attr.input_tokens.index(trigger)
        without = [t for i, t in enumerate(attr.input_ids) if i != pos] + attr.output_ids
        with torch.no_grad():
            lp_full = model(input_ids=torch.tensor([attr.input_ids + attr.output_ids])).logits[0, len(attr.input_ids) - 1].log_softmax(-1)
            lp_cut = model(input_ids=torch.tensor([without])).logits[0, len(attr.input_ids) - 2].log_softmax(-1)
    y = attr.output_ids[0]
    # Two forwards of different lengths: fp32 rounding of log-probabilities of a few nats (~1e-6
    # each); 1e-4 of the log-probability's size bounds it with room to spare.
    assert_close_relative(attr.matrix[0, pos], float(lp_full[y] - lp_cut[y]), rel=1e-4,
                          scale=max(1.0, abs(float(lp_full[y]))), what="occlusion drop")


def test_bpe_words_group_subword_tokens(tiny):
    enc = encode(tiny.tokenizer, [{"role": "user", "content": "unbelievably long words"}], "ok")
    segs = [s for s in word_segments(enc) if enc.token_message[s[0]] >= 0]
    texts = ["".join(enc.prompt_text[slice(*enc.input_offsets[i])] for i in s) for s in segs]
    assert texts == ["unbelievably", " long", " words"]


def test_rollout_switches_to_eager_and_restores(tiny):
    model = tiny.model
    before = model.config._attn_implementation
    attr = attribute(model, tiny.tokenizer, [{"role": "user", "content": "Hello there"}], "Hi.", "attention_rollout")
    assert model.config._attn_implementation == before
    assert np.all(attr.matrix >= 0) and np.all(attr.matrix.sum(1) <= 1 + 1e-6)


def test_clear_errors(tiny, trigger_model):
    model, tok = trigger_model
    with pytest.raises(TunelensError, match="exceeds the model's context of 128"):
        attribute(model, tok, [{"role": "user", "content": " ".join(["river"] * 200)}], "red")
    with pytest.raises(TunelensError, match="unknown attribution method 'shap'"):
        attribute(model, tok, [{"role": "user", "content": "river"}], "red", "shap")
    with pytest.raises(TunelensError, match="does not take"):
        attribute(model, tok, [{"role": "user", "content": "river"}], "red", "occlusion", steps=3)
    with pytest.raises(TunelensError, match="empty"):
        attribute(model, tok, [{"role": "user", "content": "river"}], "")
    with pytest.raises(TunelensError, match=r"messages\[0\]"):
        attribute(model, tok, [{"role": "robot", "content": "river"}], "red")
    with pytest.raises(TunelensError, match="baseline"):
        attribute(model, tok, [{"role": "user", "content": "river"}], "red", "ig", baseline="noise")
