"""Issue 12, point 4 (serving): the chat handler is a plain API, testable without HTTP; a streamed
answer reports what the non-streamed one does (usage and finish_reason from the engine's one
`GenerationResult`); one `max_tokens` is used and stored; output redaction runs once; the explain
heatmap is shaded without a script."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from tunelens.generate import GenerationResult
from tunelens.serve.app import create_app
from tunelens.serve.chat import ChatHandler
from tunelens.serve.config import ServeConfig
from tunelens.serve.db import Exchange
from tunelens.serve.keys import create_key
from tunelens.serve.runtime import APIError, Runtime
from tunelens.serve.schemas import ChatRequest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOKEN_STREAM = {"toxicity": {"enabled": False}, "pii": {"redact_output": False}}  # no output guardrails


@pytest.fixture(scope="module")
def tiny_loaded(tiny_model_path):
    from tunelens.models import load_model

    return load_model(str(tiny_model_path))


@pytest.fixture(scope="module")
def toy_loaded(trigger_model):
    """The toy trigger model: answers 'red' or 'yellow' and then its EOS, so a stop by EOS is real."""
    model, tok = trigger_model
    return SimpleNamespace(model=model, tokenizer=tok, model_id="toy-trigger", path="toy", revision=None)


def _config(tmp_path, names, **overrides) -> ServeConfig:
    return ServeConfig.model_validate({"models": [{"name": n, "path": "tiny-random"} for n in names],
                                       "db_url": f"sqlite:///{tmp_path}/chat.db", "rate_limit": {"enabled": False},
                                       **overrides})


def _request(**body) -> ChatRequest:
    return ChatRequest.model_validate_json(json.dumps(body))


@contextlib.contextmanager
def _client(app):
    with TestClient(app) as client:
        client.headers["Authorization"] = "Bearer " + create_key(app.state.runtime.store, "t").key
        yield client


def _sse(client, body) -> list[dict]:
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True,
                                                             "stream_options": {"include_usage": True}}) as r:
        lines = [ln for ln in r.iter_lines() if ln]
    assert r.status_code == 200 and lines[-1] == "data: [DONE]", lines[-3:]
    return [json.loads(ln[6:]) for ln in lines[:-1]]


def _stored(app, cid) -> Exchange:
    with app.state.runtime.store.session() as s:
        return s.get(Exchange, cid)


# ---------------------------------------------------------------- the handler without HTTP


def test_chat_handler_answers_without_http(tmp_path, tiny_loaded):
    cfg = _config(tmp_path, ["tiny"], guardrails=TOKEN_STREAM)

    async def main():
        rt = Runtime(cfg, {"tiny": tiny_loaded})
        await rt.start()
        try:
            chat = ChatHandler(rt)
            body = {"model": "tiny", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 3}
            done = await chat.create(_request(**body), "key-1")
            stream = await chat.create(_request(**body, stream=True, stream_options={"include_usage": True}), "key-1")
            chunks = [c async for c in stream]
            with pytest.raises(APIError) as missing:
                await chat.create(_request(**{**body, "model": "nope"}), "key-1")
            with pytest.raises(APIError) as too_many:
                await chat.create(_request(**{**body, "max_tokens": 10_000}), "key-1")
            with rt.store.session() as s:
                stored = {e.id: (e.api_key_id, e.completion_tokens, e.finish_reason) for e in s.query(Exchange)}
        finally:
            await rt.stop()
        return done, chunks, missing.value, too_many.value, stored

    done, chunks, missing, too_many, stored = asyncio.run(main())
    assert done["object"] == "chat.completion" and done["usage"]["completion_tokens"] == 3
    assert done["choices"][0]["finish_reason"] == "length"
    assert [c["object"] for c in chunks] == ["chat.completion.chunk"] * len(chunks)
    last = chunks[-1]
    assert last["usage"] == done["usage"] and last["choices"][0]["finish_reason"] == "length"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == done["choices"][0]["message"]["content"]
    assert (missing.status, missing.code) == (404, "model_not_found")
    assert (too_many.status, too_many.param) == (400, "max_tokens")
    assert stored == {done["id"]: ("key-1", 3, "length"), last["id"]: ("key-1", 3, "length")}


# ---------------------------------------------------------------- streamed = non-streamed


@pytest.mark.parametrize("guardrails", ["token-stream", "checked-replay"])
@pytest.mark.parametrize("case", ["tiny: max_tokens", "toy: max_tokens", "toy: eos"])
def test_stream_and_non_stream_report_the_same_usage_and_finish(tmp_path, tiny_loaded, toy_loaded, case, guardrails):
    model = case.split(":")[0]
    loaded = {"tiny": tiny_loaded, "toy": toy_loaded}[model]
    content = "Hello there" if model == "tiny" else "quiet cloud apple music table slow green"
    max_tokens, expected = {"tiny: max_tokens": (5, ("length", 5)), "toy: max_tokens": (1, ("length", 1)),
                            "toy: eos": (8, ("stop", 2))}[case]  # toy: 'red' + EOS
    app = create_app(_config(tmp_path, [model], guardrails=TOKEN_STREAM if guardrails == "token-stream" else {}),
                     preloaded={model: loaded})
    with _client(app) as client:
        body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens}
        plain = client.post("/v1/chat/completions", json=body).json()
        chunks = _sse(client, body)
        if model == "toy" and case.endswith("eos"):
            assert plain["choices"][0]["message"]["content"] == "red"
        last = chunks[-1]
        assert (plain["choices"][0]["finish_reason"], plain["usage"]["completion_tokens"]) == expected
        assert last["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]
        assert last["usage"] == plain["usage"]
        streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        assert streamed == plain["choices"][0]["message"]["content"]
        a, b = _stored(app, plain["id"]), _stored(app, last["id"])
        assert (a.prompt_tokens, a.completion_tokens, a.finish_reason, a.response) == (
            b.prompt_tokens, b.completion_tokens, b.finish_reason, b.response)
        assert a.request["params"]["max_tokens"] == b.request["params"]["max_tokens"] == max_tokens


# ---------------------------------------------------------------- one max_tokens


@pytest.mark.parametrize("limits, used", [
    ({"max_tokens": 5, "max_completion_tokens": 2}, 2),  # OpenAI's newer name wins
    ({"max_tokens": 3}, 3),
    ({"max_completion_tokens": 4}, 4),
    ({}, 6),  # limits.default_max_tokens
])
def test_one_max_tokens_is_used_and_stored(tmp_path, tiny_loaded, limits, used):
    app = create_app(_config(tmp_path, ["tiny"], guardrails=TOKEN_STREAM, limits={"default_max_tokens": 6}),
                     preloaded={"tiny": tiny_loaded})
    with _client(app) as client:
        body = {"model": "tiny", "messages": [{"role": "user", "content": "Hello there"}], **limits}
        plain = client.post("/v1/chat/completions", json=body).json()
        last = _sse(client, body)[-1]
        for cid, usage, finish in ((plain["id"], plain["usage"], plain["choices"][0]["finish_reason"]),
                                   (last["id"], last["usage"], last["choices"][0]["finish_reason"])):
            assert (finish, usage["completion_tokens"]) == ("length", used)  # tiny-random never says EOS
            row = _stored(app, cid)
            assert row.request["params"]["max_tokens"] == used and row.completion_tokens == used


# ---------------------------------------------------------------- redaction once

ANSWER = "Sure! Write to jane.doe@example.com today."


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("redact_output", [True, False])
def test_output_redaction_runs_once(tmp_path, tiny_loaded, monkeypatch, redact_output, stream):
    """Redacted for the client (pii.redact_output) or by the storage column, never both, never twice."""
    from tunelens.data import pii

    calls: list[str] = []
    real = pii.redact

    def counting(text, types=None):
        calls.append(text)
        return real(text, types)

    monkeypatch.setattr(pii, "redact", counting)
    app = create_app(_config(tmp_path, ["tiny"], guardrails={"toxicity": {"enabled": False},
                                                             "pii": {"redact_output": redact_output}}),
                     preloaded={"tiny": tiny_loaded})

    async def submit(prompt, params):
        return GenerationResult(ANSWER, 10, 9, "eos", 0.01)

    async def token_stream(prompt, params):
        for i in range(0, len(ANSWER), 5):
            yield ANSWER[i:i + 5]
        yield GenerationResult(ANSWER, 10, 9, "eos", 0.01)

    with _client(app) as client:
        served = app.state.runtime.models["tiny"]
        served.batcher.submit, served.batcher.stream = submit, token_stream
        body = {"model": "tiny", "messages": [{"role": "user", "content": "Mail kim@example.org please"}]}
        calls.clear()
        if stream:
            chunks = _sse(client, body)
            cid = chunks[-1]["id"]
            seen = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        else:
            done = client.post("/v1/chat/completions", json=body).json()
            cid, seen = done["id"], done["choices"][0]["message"]["content"]
        row = _stored(app, cid)
    on_output = [c for c in calls if "Sure!" in c]
    assert len(on_output) == 1, on_output
    assert len([c for c in calls if "kim@" in c or "Mail [EMAIL]" in c]) == 1  # the input, likewise
    assert row.response == "Sure! Write to [EMAIL] today." and "kim@" not in json.dumps(row.request)
    assert seen == (row.response if redact_output else ANSWER)


# ---------------------------------------------------------------- explain heatmap without a script


def test_explain_heatmap_is_shaded_without_a_script(tmp_path, tiny_loaded):
    from tunelens.serve.explain_view import STYLE_HASH, heatmap_page

    attr = SimpleNamespace(input_tokens=["<s>", "big", "cat", "?"], template_mask=[True, False, False, False],
                           aggregate=[0.0, 0.9, -0.45, 0.01], output_tokens=["yes"], method="saliency",
                           exclude_template=True)
    page = heatmap_page(attr)
    classes = re.findall(r'class="tl-tok tl-in([^"]*)"', page)
    assert classes == [" tl-tmpl", " tl-p10", " tl-n5", ""]
    assert "<script" not in page and " style=" not in page

    app = create_app(_config(tmp_path, ["tiny"]), preloaded={"tiny": tiny_loaded})
    with _client(app) as client:
        csp = client.get("/").headers["content-security-policy"]
        assert STYLE_HASH in csp and "unsafe-hashes" not in csp and "unsafe-inline" not in csp
        r = client.post("/v1/chat/completions", json={"model": "tiny", "max_tokens": 2, "explain": True,
                                                      "messages": [{"role": "user", "content": "Hello there"}]})
        ex = r.json()["tunelens"]["explanation"]
        assert ex["available"], ex
        assert "<script" not in ex["html"] and re.search(r"tl-[pn]\d+", ex["html"])
