"""Issue 16, point 5: `/v1/completions` (legacy text completions) through the official `openai`
client: raw prompts (string or list), max_tokens, stop, seed, logprobs (legacy shape), echo (with
the prompt's tokens scored, as lm-eval's local-completions asks), stream; unimplemented fields are
400s naming them; every prompt is stored as an exchange."""

from __future__ import annotations

import math

import openai
import pytest
from fastapi.testclient import TestClient

from tunelens.serve.db import Exchange
from tunelens.serve.keys import create_key

from _serve import make_app

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPT = "The quick brown fox"


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_loaded):
    app = make_app(tmp_path_factory.mktemp("cmpl"), tiny_loaded,
                   guardrails={"toxicity": {"enabled": False}, "pii": {"redact_output": False}})
    with TestClient(app) as client:
        key = create_key(app.state.runtime.store, "t").key
        client.headers["Authorization"] = f"Bearer {key}"
        yield app, client, openai.OpenAI(api_key=key, base_url="http://testserver/v1", http_client=client)


def test_completion_is_the_engine_on_the_raw_prompt(served, tiny_loaded):
    from tunelens.generate import GenerationParams, generate

    app, _, oa = served
    out = oa.completions.create(model="tiny", prompt=PROMPT, max_tokens=6)
    assert out.object == "text_completion" and len(out.choices) == 1
    (ref,) = generate(tiny_loaded.model, tiny_loaded.tokenizer, [PROMPT], GenerationParams(max_new_tokens=6))
    assert out.choices[0].text == ref.text  # no chat template: the prompt string as is
    assert out.usage.prompt_tokens == ref.prompt_tokens and out.usage.completion_tokens == ref.completion_tokens
    with app.state.runtime.store.session() as s:
        row = s.get(Exchange, out.id)
        assert row.request["params"]["endpoint"] == "completions" and row.response == out.choices[0].text


def test_list_of_prompts_gives_one_choice_each(served):
    _, _, oa = served
    prompts = [PROMPT, "Once upon a time", "1, 2, 3,"]
    out = oa.completions.create(model="tiny", prompt=prompts, max_tokens=4)
    assert [c.index for c in out.choices] == [0, 1, 2]
    for p, c in zip(prompts, out.choices):
        one = oa.completions.create(model="tiny", prompt=p, max_tokens=4)
        assert one.choices[0].text == c.text
    assert len(out.model_extra["tunelens"]["exchange_ids"]) == 3


def test_logprobs_legacy_shape_and_echo_scores_the_prompt(served, tiny_loaded):
    import torch

    _, _, oa = served
    out = oa.completions.create(model="tiny", prompt=PROMPT, max_tokens=5, logprobs=2)
    lp = out.choices[0].logprobs
    assert "".join(lp.tokens) == out.choices[0].text
    assert len(lp.token_logprobs) == len(lp.tokens) == len(lp.top_logprobs) == len(lp.text_offset)
    assert all(len(t) == 2 for t in lp.top_logprobs) and all(x <= 0 for x in lp.token_logprobs)

    # lm-eval's loglikelihood request: echo, logprobs, max_tokens 0
    scored = oa.completions.create(model="tiny", prompt=PROMPT, max_tokens=0, echo=True, logprobs=1)
    s = scored.choices[0]
    assert s.text == PROMPT and "".join(s.logprobs.tokens) == PROMPT
    assert s.logprobs.token_logprobs[0] is None
    ids = tiny_loaded.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        ref = torch.log_softmax(tiny_loaded.model(torch.tensor([ids])).logits[0].float(), -1)
    want = sum(ref[j - 1, ids[j]].item() for j in range(1, len(ids)))
    got = sum(s.logprobs.token_logprobs[1:])
    assert math.isclose(got, want, rel_tol=1e-4)


def test_echo_stop_seed_stream(served):
    _, _, oa = served
    echoed = oa.completions.create(model="tiny", prompt=PROMPT, max_tokens=4, echo=True)
    plain = oa.completions.create(model="tiny", prompt=PROMPT, max_tokens=4)
    assert echoed.choices[0].text == PROMPT + plain.choices[0].text

    full = oa.completions.create(model="tiny", prompt=PROMPT, max_tokens=10, frequency_penalty=2.0)
    text = full.choices[0].text
    stop = text[4:7]
    cut = oa.completions.create(model="tiny", prompt=PROMPT, max_tokens=10, frequency_penalty=2.0, stop=stop)
    assert cut.choices[0].finish_reason == "stop" and cut.choices[0].text == text[:text.find(stop)]

    a = oa.completions.create(model="tiny", prompt=PROMPT, max_tokens=8, temperature=1.0, seed=7)
    b = oa.completions.create(model="tiny", prompt=PROMPT, max_tokens=8, temperature=1.0, seed=7)
    assert a.choices[0].text == b.choices[0].text

    chunks = list(oa.completions.create(model="tiny", prompt=PROMPT, max_tokens=4, stream=True,
                                        stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == plain.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


@pytest.mark.parametrize("extra", [{"logit_bias": {"5": 1}}, {"suffix": "x"}, {"best_of": 2}, {"n": 2}])
def test_unimplemented_fields_are_400_naming_them(served, extra):
    _, _, oa = served
    with pytest.raises(openai.BadRequestError) as err:
        oa.completions.create(model="tiny", prompt=PROMPT, max_tokens=2, **extra)
    assert err.value.body["param"].split(".")[0] == next(iter(extra))


def test_max_tokens_zero_needs_echo(served):
    _, client, _ = served
    r = client.post("/v1/completions", json={"model": "tiny", "prompt": PROMPT, "max_tokens": 0})
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"


def test_prompt_without_tokens_is_continued_from_bos(served):
    # a schema-valid prompt the tokenizer makes nothing of (found by schemathesis) is still answered
    _, client, _ = served
    r = client.post("/v1/completions", json={"model": "tiny", "prompt": ["\u0004", "hi"], "max_tokens": 2,
                                             "echo": True, "logprobs": 1})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"].startswith("\u0004")


@pytest.mark.parametrize("prompt", [[1, 2, 3], [[1, 2, 3]]])
def test_token_id_prompts_are_400_naming_prompt(served, prompt):
    _, client, _ = served
    r = client.post("/v1/completions", json={"model": "tiny", "prompt": prompt, "max_tokens": 2})
    assert r.status_code == 400 and r.json()["error"]["param"].split(".")[0] == "prompt"
