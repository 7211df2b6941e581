"""Issue 16, point 5: every chat request field is honoured or rejected with a 400 naming it.

Through the official `openai` client against the in-process tiny app: frequency / presence
penalties change the output by OpenAI's definition, logprobs / top_logprobs come back in the chat
shape and describe the returned text, a seed makes sampling repeatable whatever else is in the
micro-batch, stop strings trim the text with finish_reason "stop", and fields the server does not
implement (logit_bias, tools, n > 1) are 400s naming the field. A non-hf backend refuses the fields
it cannot honour, naming the field and the backend.
"""

from __future__ import annotations

import asyncio
import math

import openai
import pytest
from fastapi.testclient import TestClient

from tunelens.serve.keys import create_key

from _serve import make_app

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NO_OUTPUT_GUARDS = {"guardrails": {"toxicity": {"enabled": False}, "pii": {"redact_output": False}}}
MSG = [{"role": "user", "content": "Write a long poem about cats"}]


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_loaded):
    app = make_app(tmp_path_factory.mktemp("params"), tiny_loaded, **NO_OUTPUT_GUARDS)
    with TestClient(app) as client:
        key = create_key(app.state.runtime.store, "t").key
        client.headers["Authorization"] = f"Bearer {key}"
        yield app, client, openai.OpenAI(api_key=key, base_url="http://testserver/v1", http_client=client)


def _tokens(app, text: str) -> list[int]:
    return app.state.runtime.models["tiny"].loaded.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_penalties_change_greedy_output_by_openai_definition(served):
    app, _, oa = served
    plain = oa.chat.completions.create(model="tiny", messages=MSG, max_tokens=16)
    penal = oa.chat.completions.create(model="tiny", messages=MSG, max_tokens=16, frequency_penalty=2.0,
                                       presence_penalty=2.0)
    a, b = plain.choices[0].message.content, penal.choices[0].message.content
    assert a != b
    # the tiny random model repeats one token greedily; penalised, it may not repeat as much
    ids_a, ids_b = _tokens(app, a), _tokens(app, b)
    assert len(set(ids_b)) / len(ids_b) > len(set(ids_a)) / len(ids_a)


def test_penalty_processor_formula():
    import torch

    from tunelens.generate import GenerationParams
    from tunelens.generate.engine import _penalties

    proc = _penalties(GenerationParams(frequency_penalty=0.5, presence_penalty=0.25), prompt_width=2)
    ids = torch.tensor([[7, 7, 3, 3, 3, 1]])  # prompt [7, 7]; generated 3 three times, 1 once
    scores = torch.zeros(1, 10)
    out = proc(ids, scores.clone())
    assert math.isclose(out[0, 3].item(), -(3 * 0.5 + 0.25), rel_tol=1e-6)
    assert math.isclose(out[0, 1].item(), -(0.5 + 0.25), rel_tol=1e-6)
    assert out[0, 7].item() == 0  # prompt tokens are not penalised
    assert out[0, 0].item() == 0


def test_logprobs_and_top_logprobs(served):
    app, _, oa = served
    out = oa.chat.completions.create(model="tiny", messages=MSG, max_tokens=6, logprobs=True, top_logprobs=3)
    choice = out.choices[0]
    content = choice.logprobs.content
    assert content and "".join(t.token for t in content) == choice.message.content
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 3
        tops = [x.logprob for x in t.top_logprobs]
        assert tops == sorted(tops, reverse=True)
        assert t.logprob <= tops[0] + 1e-6  # greedy takes the likeliest token
        assert math.isclose(t.logprob, tops[0], rel_tol=1e-5, abs_tol=1e-5)
    plain = oa.chat.completions.create(model="tiny", messages=MSG, max_tokens=6)
    assert plain.choices[0].logprobs is None and plain.choices[0].message.content == choice.message.content
    # streamed: the last chunk carries the logprobs of the whole answer
    chunks = list(oa.chat.completions.create(model="tiny", messages=MSG, max_tokens=6, logprobs=True, stream=True))
    streamed = [c.choices[0].logprobs for c in chunks if c.choices and c.choices[0].logprobs]
    assert len(streamed) == 1 and [t.token for t in streamed[0].content] == [t.token for t in content]


def test_top_logprobs_needs_logprobs(served):
    _, _, oa = served
    with pytest.raises(openai.BadRequestError) as err:
        oa.chat.completions.create(model="tiny", messages=MSG, max_tokens=2, top_logprobs=2)
    assert err.value.body["param"] == "top_logprobs"


def test_seed_repeatable_whatever_shares_the_batch(served):
    app, client, _ = served
    body = {"model": "tiny", "messages": MSG, "max_tokens": 8, "temperature": 1.0, "seed": 1234}
    alone = client.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    handler = app.state.chat
    from tunelens.serve.schemas import ChatRequest

    async def crowd():
        # the seeded request arrives with other sampled and greedy requests in one micro-batch window
        reqs = [ChatRequest.model_validate(body)] + [
            ChatRequest.model_validate({**body, "seed": None, "messages": [{"role": "user", "content": f"x{i}"}]})
            for i in range(3)] + [ChatRequest.model_validate({**body, "temperature": 0})]
        return await asyncio.gather(*(handler.create(r, "k") for r in reqs))

    # the app's event loop is the TestClient's portal
    outs = client.portal.call(crowd)
    assert outs[0]["choices"][0]["message"]["content"] == alone
    other = client.post("/v1/chat/completions", json={**body, "seed": 99}).json()["choices"][0]["message"]["content"]
    assert other != alone


def test_stop_trims_and_reports_stop(served):
    _, _, oa = served
    full = oa.chat.completions.create(model="tiny", messages=MSG, max_tokens=12, frequency_penalty=2.0)
    text = full.choices[0].message.content
    stop = text[3:6]
    assert stop.strip()
    cut = oa.chat.completions.create(model="tiny", messages=MSG, max_tokens=12, frequency_penalty=2.0, stop=[stop])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == text[:text.find(stop)]


@pytest.mark.parametrize("field,value", [("logit_bias", {"50": 5}), ("tools", [{"type": "function", "function": {
    "name": "f", "parameters": {}}}]), ("n", 2), ("response_format", {"type": "json_object"}), ("logprobs", "yes")])
def test_unimplemented_fields_are_400_naming_them(served, field, value):
    _, _, oa = served
    with pytest.raises(openai.BadRequestError) as err:
        oa.chat.completions.create(model="tiny", messages=MSG, max_tokens=2, **{field: value})
    assert err.value.status_code == 400
    assert err.value.body["param"].split(".")[0] == field


def test_non_hf_backend_refuses_what_it_cannot_honour(served):

    from tunelens.serve.chat import check_backend
    from tunelens.serve.runtime import APIError
    from tunelens.serve.schemas import ChatRequest, CompletionRequest

    for req, field in [(ChatRequest.model_validate({"model": "m", "messages": MSG, "presence_penalty": 0.5}),
                        "presence_penalty"),
                       (ChatRequest.model_validate({"model": "m", "messages": MSG, "logprobs": True}), "logprobs"),
                       (CompletionRequest.model_validate({"model": "m", "prompt": "x", "echo": True}), "echo")]:
        with pytest.raises(APIError) as err:
            check_backend(req, "llamacpp")
        assert err.value.status == 400 and err.value.param == field and "llamacpp" in err.value.message
        check_backend(req, "hf")
    # seed and stop are honoured by llamacpp (its own seeded sampler, stop strings): no refusal
    check_backend(ChatRequest.model_validate({"model": "m", "messages": MSG, "seed": 3, "stop": "x"}), "llamacpp")


def test_logprobs_of_an_answer_that_ends_on_eos_include_the_eos(trigger_model):
    """The toy trigger model answers a word and then EOS: the EOS token is scored (empty text), so
    there is one log-probability per completion token, and the texts still add up to the answer."""
    from tunelens.generate import GenerationParams, generate, stream_generate
    from _toy import trigger_example
    import random

    model, tok = trigger_model
    msgs, answer, _ = trigger_example(random.Random(3))
    (res,) = generate(model, tok, [msgs], GenerationParams(max_new_tokens=8, logprobs=2))
    assert res.finish_reason == "eos" and res.text.strip() == answer
    assert len(res.logprobs) == res.completion_tokens
    assert res.logprobs[-1].token == "" and res.logprobs[-1].logprob <= 0
    assert "".join(t.token for t in res.logprobs) == res.text
    stream = stream_generate(model, tok, msgs, GenerationParams(max_new_tokens=8, logprobs=2))
    assert "".join(stream) == res.text
    assert [t.token_id for t in stream.result.logprobs] == [t.token_id for t in res.logprobs]


@pytest.mark.parametrize("extra", [{"name": "alice"}, {"tool_call_id": "call_1"},
                                   {"tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}])
def test_a_message_field_the_server_cannot_honour_is_a_400_naming_it(served, extra):
    _, client, _ = served
    field = next(iter(extra))
    r = client.post("/v1/chat/completions", json={"model": "tiny", "max_tokens": 2,
                                                  "messages": [{"role": "user", "content": "hi", **extra}]})
    assert r.status_code == 400, r.text
    assert field in r.text
