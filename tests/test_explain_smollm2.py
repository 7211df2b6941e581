"""One real-model check: SmolLM2-135M explains an IFEval prompt and the explanation beats random."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.mark.slow
def test_smollm2_input_x_gradient_is_faithful(smollm2_path, shared_data):
    from tunelens.explain import attribute, faithfulness
    from tunelens.explain.toy import shared_model

    loaded = shared_model(str(smollm2_path))
    rows = [json.loads(line) for line in (shared_data / "ifeval_input_data.jsonl").read_text(encoding="utf-8").splitlines()]
    prompt = min((r["prompt"] for r in rows), key=len)
    messages = [{"role": "user", "content": prompt}]
    attr = attribute(loaded.model, loaded.tokenizer, messages, "Sure! Here is", "input_x_gradient", exclude_template=True)
    assert attr.matrix.shape == (len(attr.output_tokens), len(attr.input_tokens))
    assert np.isfinite(attr.matrix).all() and (attr.matrix >= 0).all()
    # SmolLM2's template injects its default system prompt: all template, none of it the user's.
    assert "SmolLM" in "".join(t for t, m in zip(attr.input_tokens, attr.template_mask) if m)
    assert "".join(t for t, m in zip(attr.input_tokens, attr.template_mask) if not m) == prompt
    faith = faithfulness(loaded.model, loaded.tokenizer, attr, ks=(0.1, 0.5), n_random=3)
    assert faith["per_k"][1]["comprehensiveness"] > 0
    assert faith["comprehensiveness_gain"] > 0, faith
