"""One real-model check: SmolLM2-135M's explanation of a copying response is faithful."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.slow
def test_smollm2_input_x_gradient_is_faithful(smollm2_path):
    from tunelens.explain import attribute, faithfulness
    from _toy import shared_model

    loaded = shared_model(str(smollm2_path))
    prompt = "Repeat the word pineapple three times, separated by spaces, and nothing else."
    messages = [{"role": "user", "content": prompt}]
    attr = attribute(loaded.model, loaded.tokenizer, messages, "pineapple pineapple pineapple", "input_x_gradient",
                     exclude_template=True)
    assert attr.matrix.shape == (len(attr.output_tokens), len(attr.input_tokens))
    assert np.isfinite(attr.matrix).all() and (attr.matrix >= 0).all()
    # SmolLM2's template injects its default system prompt: all template, none of it the user's.
    assert "SmolLM" in "".join(t for t, m in zip(attr.input_tokens, attr.template_mask) if m)
    assert "".join(t for t, m in zip(attr.input_tokens, attr.template_mask) if not m) == prompt
    top = attr.input_tokens[int(np.argmax(attr.aggregate))]
    faith = faithfulness(loaded.model, loaded.tokenizer, attr, ks=(0.1, 0.5), n_random=3)
    # Deleting the most attributed tokens (the word to copy among them) costs more than random deletions.
    assert faith["per_k"][0]["comprehensiveness"] > faith["per_k"][0]["comprehensiveness_random"], (top, faith)
    assert faith["better_than_random"], (top, faith["verdict"])
