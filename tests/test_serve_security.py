"""Issue 11, server part: what an attacker on loopback found, each point as a test that fails on the old server.

Batch isolation, 400 (never 500) for the reported inputs, strict types, keep-alive after a 500,
storage outages as 503 before generation, key roles for feedback and A/B, security headers,
and the published OpenAPI document.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import threading
import time

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tunelens.serve.background import free_port
from tunelens.serve.db import Exchange, Store
from tunelens.serve.keys import create_key

from _serve import make_app as _app

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_loaded):
    app = _app(tmp_path_factory.mktemp("sec"), tiny_loaded)
    with TestClient(app) as client:
        key = create_key(app.state.runtime.store, "tests").key
        client.headers["Authorization"] = f"Bearer {key}"
        yield app, client, key


@contextlib.contextmanager
def live(app):
    """uvicorn in a thread of this process, on a free loopback port."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not server.started:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(15)


def _chat_body(content="Hello there", **extra):
    return {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 3, **extra}


def _raw(client, path, raw: str):
    """POST a JSON text as-is (so '\\ud800' escapes reach the server as lone surrogates)."""
    return client.post(path, content=raw.encode(), headers={"content-type": "application/json"})


# ---------------------------------------------------------------- one bad request, one batch


def test_one_bad_request_does_not_fail_the_batch_over_http(tmp_path, tiny_loaded):
    """The reported attack: 5 rounds of 7 ordinary requests + 1 with a lone surrogate, sent together."""
    app = _app(tmp_path, tiny_loaded, batching={"max_batch_size": 8, "max_wait_ms": 200})
    key = create_key(app.state.runtime.store, "t").key
    bad = '{"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": "a\\ud800b"}]}'
    with live(app) as url:
        async def round_(client, r):
            good = [client.post("/v1/chat/completions", json=_chat_body(f"round {r} question {i}", max_tokens=2))
                    for i in range(7)]
            poison = client.post("/v1/chat/completions", content=bad.encode(),
                                 headers={"content-type": "application/json"})
            return await asyncio.gather(*good, poison)

        async def main():
            async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
                return [await round_(c, r) for r in range(5)]

        rounds = asyncio.run(main())
    for responses in rounds:
        *good, poison = responses
        assert [r.status_code for r in good] == [200] * 7, [r.text for r in good if r.status_code != 200]
        assert poison.status_code == 400 and poison.json()["error"]["param"] == "messages.0.content"
    assert app.state.runtime.models["tiny"].batcher.requests_run == 35


def test_batcher_reruns_a_failed_batch_one_by_one(tiny_loaded):
    """A request that makes `generate` itself raise fails alone; the others in its batch succeed."""
    from tunelens.generate import GenerationParams, PromptTooLongError
    from tunelens.serve.batching import MicroBatcher

    params = GenerationParams(max_new_tokens=2)

    async def main():
        batcher = MicroBatcher(tiny_loaded.model, tiny_loaded.tokenizer, max_batch_size=8, max_wait_ms=300)
        await batcher.start()
        try:
            good = [[{"role": "user", "content": f"question {i}"}] for i in range(5)]
            too_long = [{"role": "user", "content": "word " * 20000}]  # PromptTooLongError: fails any batch it is in
            surrogate = [{"role": "user", "content": "a\ud800b"}]  # the tokenizer cannot encode it
            prompts = good[:3] + [too_long] + good[3:] + [surrogate]
            out = await asyncio.gather(*(batcher.submit(p, params) for p in prompts), return_exceptions=True)
            return out, batcher.isolation_retries, batcher.requests_run
        finally:
            await batcher.stop()

    out, retries, ran = asyncio.run(main())
    assert isinstance(out[3], PromptTooLongError)
    assert isinstance(out[6], Exception)
    ok = [r for i, r in enumerate(out) if i not in (3, 6)]
    assert all(not isinstance(r, Exception) and r.completion_tokens >= 1 for r in ok), out
    assert retries == 1 and ran == 5  # they were batched together, then isolated


# ---------------------------------------------------------------- 400, never 500


@pytest.mark.parametrize("raw, param", [
    ('{"model": "tiny", "max_tokens": 2, "temperature": 1e-300, "messages": [{"role": "user", "content": "hi"}]}',
     "temperature"),
    ('{"model": "tiny", "max_tokens": 2, "seed": 18446744073709551616, "messages": [{"role": "user", "content": "hi"}]}',
     "seed"),
    ('{"model": "tiny", "max_tokens": 2, "seed": -9223372036854775809, "messages": [{"role": "user", "content": "hi"}]}',
     "seed"),
    ('{"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": "a\\ud800b"}]}', "messages.0.content"),
    ('{"model": "tiny", "max_tokens": 2, "stream": true, "messages": [{"role": "user", "content": "a\\ud800b"}]}',
     "messages.0.content"),
    ('{"model": "tiny", "max_tokens": 2, "documents": ["ok", "\\udfff"], "messages": [{"role": "user", "content": "hi"}]}',
     "documents.1"),
    ('{"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": [{"type": "text", "text": "\\ud800"}]}]}',
     "messages.0.content.0.text"),
    ('{"model": "tiny", "max_tokens": 2, "stop": ["\\ud800"], "messages": [{"role": "user", "content": "hi"}]}', "stop.0"),
    ('{"model": "tiny", "max_tokens": 2, "messages": [{"role": "user", "content": "nul \\u0000 here"}]}',
     "messages.0.content"),
    ('{"model": "tiny", "max_tokens": 2, "temperature": NaN, "messages": [{"role": "user", "content": "hi"}]}',
     "temperature"),
    ('{"model": "tiny", "max_tokens": 2, "presence_penalty": Infinity, "messages": [{"role": "user", "content": "hi"}]}',
     "presence_penalty"),
    ('{"model": "tiny", "\\ud800": 1, "messages": [{"role": "user", "content": "hi"}]}', None),  # a key is no field name
])
def test_reported_inputs_get_400_naming_the_field(server, raw, param):
    _, client, _ = server
    r = _raw(client, "/v1/chat/completions", raw)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error", err
    assert (param or "body").split(".")[0] in err["message"]


def test_surrogates_in_feedback_and_ab_are_400(server):
    _, client, _ = server
    for path, raw, param in (
            ("/v1/feedback", '{"completion_id": "x", "correction": "\\ud800"}', "correction"),
            ("/v1/feedback", '{"completion_id": "\\ud800", "rating": "up"}', "completion_id"),
            ("/v1/ab/pair", '{"prompt": "a\\udc00"}', "prompt"),
            ("/v1/ab/judge", '{"pair_id": "\\ud800", "choice": "left"}', "pair_id")):
        r = _raw(client, path, raw)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, (path, r.text)


def test_boundary_values_are_served(server):
    """The limits are where the schema says: the smallest sampling temperature and the int64 seeds work."""
    _, client, _ = server
    for extra in ({"temperature": 0.001, "seed": 2**63 - 1}, {"temperature": 2, "seed": -(2**63)},
                  {"temperature": 1, "top_p": 1e-300, "seed": 0}):
        r = client.post("/v1/chat/completions", json=_chat_body(**extra))
        assert r.status_code == 200, (extra, r.text)
    r = client.post("/v1/chat/completions", json=_chat_body(temperature=0.0009))
    assert r.status_code == 400 and r.json()["error"]["param"] == "temperature"


@pytest.mark.parametrize("path", ["/static/%00", "/static/chat.js%00.png", "/static/..%2fapp.py", "/static/%ff",
                                  "/static/%ed%a0%80", "/static/chat.js%20", "/static/.",
                                  "/static/" + "a" * 5000])
def test_malformed_static_paths_are_json_404(server, path):
    _, client, _ = server
    r = client.get(path)
    assert r.status_code == 404 and r.headers["content-type"] == "application/json", (path, r.text[:200])
    assert r.json()["error"]["code"] == "not_found"
    assert client.get("/static/chat.js").status_code == 200


@pytest.mark.parametrize("body, param", [
    ({"max_tokens": "10"}, "max_tokens"),
    ({"max_tokens": True}, "max_tokens"),
    ({"max_tokens": 2.5}, "max_tokens"),
    ({"max_completion_tokens": 100000}, "max_completion_tokens"),  # checked even when max_tokens is used
    ({"stream": "yes"}, "stream"),
    ({"stream": 1}, "stream"),
    ({"explain": "true"}, "explain"),
    ({"temperature": "0.5"}, "temperature"),
    ({"seed": "1"}, "seed"),
    ({"stop": 5}, "stop"),
    ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages.0.content.0.type"),
    ({"messages": [{"role": "system", "content": "only a system turn"}]}, "messages"),
    ({"n": 2}, "n"),
])
def test_types_are_strict(server, body, param):
    _, client, _ = server
    r = client.post("/v1/chat/completions", json={**_chat_body(), **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param, r.json()


def test_feedback_types_are_strict(server):
    app, client, _ = server
    cid = client.post("/v1/chat/completions", json=_chat_body()).json()["id"]
    for body in ({"rating": "5"}, {"rating": 4.5}, {"rating": True}, {"rating": 6}, {"rating": None},
                 {"correction": None}, {}, {"correction": ""}):
        r = client.post("/v1/feedback", json={"completion_id": cid, **body})
        assert r.status_code == 400, (body, r.text)
    assert client.post("/v1/feedback", json={"completion_id": cid, "rating": 5}).status_code == 200


# ---------------------------------------------------------------- a 500 keeps the connection


def test_a_500_does_not_poison_the_keep_alive_connection(tmp_path, tiny_loaded, monkeypatch):
    """A server bug answers a JSON 500, and the next request on the same connection is served."""
    app = _app(tmp_path, tiny_loaded)
    key = create_key(app.state.runtime.store, "t").key
    guards = app.state.runtime.guards
    real = guards.check_input

    def buggy(messages, documents, *roles):  # check_input(messages, documents, roles) since scan_roles
        if "trigger-bug" in messages[-1]["content"]:
            raise RuntimeError("an internal bug")
        return real(messages, documents, *roles)

    monkeypatch.setattr(guards, "check_input", buggy)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with live(app) as url:
        conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=60)
        try:
            for _ in range(5):
                conn.request("POST", "/v1/chat/completions", json.dumps(_chat_body("trigger-bug")), headers)
                r = conn.getresponse()
                body = json.loads(r.read())
                sock = conn.sock
                assert r.status == 500 and body["error"]["code"] == "internal_error"
                assert "an internal bug" not in json.dumps(body)  # no internals to the client
                conn.request("POST", "/v1/chat/completions", json.dumps(_chat_body("fine")), headers)
                r = conn.getresponse()
                assert r.status == 200 and json.loads(r.read())["object"] == "chat.completion"
                assert conn.sock is sock  # the same connection: not reset, not reopened
        finally:
            conn.close()


# ---------------------------------------------------------------- storage outages: 503, before generation


def _read_only(store: Store) -> None:
    """From now on every new connection refuses writes (SQLite's query_only), as a read-only database does."""
    sa.event.listen(store.engine, "connect", lambda dbapi_conn, _r: dbapi_conn.execute("PRAGMA query_only = ON"))
    store.engine.dispose()
    store._last_ok = float("-inf")  # forget the last successful probe, as after a second has passed


def test_read_only_database_503_and_degraded_health(tmp_path, tiny_loaded):
    app = _app(tmp_path, tiny_loaded)
    rt = app.state.runtime
    with TestClient(app) as client:
        client.headers["Authorization"] = "Bearer " + create_key(rt.store, "t").key
        ok = client.post("/v1/chat/completions", json=_chat_body())
        assert ok.status_code == 200 and client.get("/health").json()["status"] == "ok"
        before = rt.models["tiny"].batcher.requests_run
        _read_only(rt.store)

        r = client.post("/v1/chat/completions", json=_chat_body())
        assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable", r.text
        assert "storage unavailable" in r.json()["error"]["message"] and r.headers["retry-after"]
        assert rt.models["tiny"].batcher.requests_run == before  # failed before generation
        r = client.post("/v1/chat/completions", json=_chat_body(stream=True))
        assert r.status_code == 503 and rt.models["tiny"].batcher.requests_run == before
        r = client.post("/v1/feedback", json={"completion_id": ok.json()["id"], "rating": "up"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable", r.text
        r = client.post("/v1/ab/pair", json={"prompt": "hi", "max_tokens": 2})
        assert r.status_code == 503 and rt.models["tiny"].batcher.requests_run == before
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        assert "readonly" in health.json()["storage"]["error"]
        assert client.get("/v1/models").status_code == 200  # reads still work

    with rt.store.session() as s:  # nothing was acknowledged that is not stored
        assert s.query(Exchange).count() == 1


def test_write_failure_after_generation_is_503_not_a_false_ack(tmp_path, tiny_loaded):
    app = _app(tmp_path, tiny_loaded)
    rt = app.state.runtime
    with TestClient(app) as client:
        client.headers["Authorization"] = "Bearer " + create_key(rt.store, "t").key
        assert client.post("/v1/chat/completions", json=_chat_body()).status_code == 200
        rt.store.PROBE_TTL_S = 3600  # the probe says "writable" from its cache...
        rt.store.probe_write()
        sa.event.listen(rt.store.engine, "connect", lambda c, _r: c.execute("PRAGMA query_only = ON"))
        rt.store.engine.dispose()  # ...but the write itself fails
        r = client.post("/v1/chat/completions", json=_chat_body())
        assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable"
        assert client.get("/health").json()["status"] == "degraded"


def test_server_starts_on_a_read_only_database_and_says_degraded(tmp_path, tiny_loaded):
    db = tmp_path / "ro.db"
    store = Store(f"sqlite:///{db}")
    key = create_key(store, "t").key
    store.close()
    app = _app(tmp_path, tiny_loaded, db_url=f"sqlite:///file:{db}?mode=ro&uri=true")
    with TestClient(app) as client:
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "degraded", health.text
        client.headers["Authorization"] = f"Bearer {key}"
        assert client.get("/v1/models").status_code == 200
        r = client.post("/v1/chat/completions", json=_chat_body())
        assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable"
        assert app.state.runtime.models["tiny"].batcher.requests_run == 0


# ---------------------------------------------------------------- key roles


def test_feedback_and_judgments_only_on_own_exchanges_unless_admin(tmp_path, tiny_loaded):
    app = _app(tmp_path, tiny_loaded)
    store = app.state.runtime.store
    alice, bob = create_key(store, "alice").key, create_key(store, "bob").key
    admin = create_key(store, "ops", role="admin").key
    auth = {k: {"Authorization": f"Bearer {v}"} for k, v in (("alice", alice), ("bob", bob), ("admin", admin))}
    with TestClient(app) as client:
        cid = client.post("/v1/chat/completions", json=_chat_body(), headers=auth["alice"]).json()["id"]
        for body in ({"rating": "down"}, {"preferred": "poisoned DPO data"}, {"correction": "x"}):
            r = client.post("/v1/feedback", json={"completion_id": cid, **body}, headers=auth["bob"])
            assert r.status_code == 404 and r.json()["error"]["param"] == "completion_id", r.text
        assert client.post("/v1/feedback", json={"completion_id": cid, "rating": "up"}, headers=auth["alice"]).status_code == 200
        assert client.post("/v1/feedback", json={"completion_id": cid, "rating": 3}, headers=auth["admin"]).status_code == 200

        pair = client.post("/v1/ab/pair", json={"prompt": "Pick one", "max_tokens": 2}, headers=auth["alice"]).json()
        r = client.post("/v1/ab/judge", json={"pair_id": pair["pair_id"], "choice": "left"}, headers=auth["bob"])
        assert r.status_code == 404 and r.json()["error"]["param"] == "pair_id"
        assert client.post("/v1/ab/judge", json={"pair_id": pair["pair_id"], "choice": "tie"},
                           headers=auth["alice"]).status_code == 200
        other = client.post("/v1/ab/pair", json={"prompt": "Pick two", "max_tokens": 2}, headers=auth["bob"]).json()
        assert client.post("/v1/ab/judge", json={"pair_id": other["pair_id"], "choice": "right"},
                           headers=auth["admin"]).status_code == 200

    from tunelens.serve.db import Feedback

    with store.session() as s:
        assert sorted(f.rating for f in s.query(Feedback)) == [1, 3]  # bob's three attempts stored nothing


def test_old_database_is_migrated_and_its_keys_become_users(tmp_path, tiny_loaded):
    from alembic import command
    from alembic.config import Config

    from tunelens.serve.db import MIGRATIONS_DIR
    from tunelens.serve.keys import _hash

    db = f"sqlite:///{tmp_path}/old.db"
    engine = sa.create_engine(db)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:  # a database as the previous release left it
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(sa.text("INSERT INTO api_keys (id, name, salt, key_hash, created_at) VALUES "
                             "('abc123', 'legacy', 's', :h, '2026-01-01')"), {"h": _hash("s", "secretsecret")})
    engine.dispose()
    app = _app(tmp_path, tiny_loaded, db_url=db)
    with TestClient(app) as client:
        client.headers["Authorization"] = "Bearer tl_abc123_secretsecret"
        cid = client.post("/v1/chat/completions", json=_chat_body()).json()["id"]
        assert client.post("/v1/feedback", json={"completion_id": cid, "rating": "up"}).status_code == 200
    with sa.create_engine(db).connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0002"
        assert conn.execute(sa.text("SELECT role FROM api_keys WHERE id = 'abc123'")).scalar() == "user"


# ---------------------------------------------------------------- headers, docs, OpenAPI


def test_security_headers_on_every_response(server, tmp_path, tiny_loaded):
    app, client, _ = server
    responses = [client.get("/"), client.get("/ab"), client.get("/static/chat.js"), client.get("/health"),
                 client.get("/v1/models"), client.get("/nope"), client.get("/openapi.json"),
                 client.post("/v1/chat/completions", json=_chat_body("x" * 70000)),  # 413 from the middleware
                 TestClient(app).get("/v1/models")]  # 401
    for r in responses:
        assert r.headers["x-content-type-options"] == "nosniff", r.url
        assert r.headers["x-frame-options"] == "DENY"
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert {r.status_code for r in responses} >= {200, 401, 404, 413}
    # /docs would load Swagger UI from a CDN: off unless configured
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").status_code == 200
    with TestClient(_app(tmp_path, tiny_loaded, api_docs=True)) as docs:
        r = docs.get("/docs")
        assert r.status_code == 200 and "cdn.jsdelivr.net" in r.headers["content-security-policy"]
        assert "cdn.jsdelivr.net" not in docs.get("/").headers["content-security-policy"]


def test_405_has_allow_header_and_json(server):
    _, client, _ = server
    for method, path, allowed in (("GET", "/v1/chat/completions", "POST"), ("DELETE", "/v1/models", "GET"),
                                  ("PUT", "/health", "GET")):
        r = client.request(method, path)
        assert r.status_code == 405 and allowed in r.headers["allow"], (method, path, r.headers)
        assert r.json()["error"]["code"] == "method_not_allowed"


def test_openapi_documents_the_real_statuses_and_limits(server):
    app, client, _ = server
    spec = client.get("/openapi.json").json()
    ops = {(m, p): op for p, item in spec["paths"].items() for m, op in item.items()}
    assert {s for op in ops.values() for s in op["responses"]} >= {"200", "400", "401", "404", "409", "413", "429", "503"}
    assert not any("422" in op["responses"] for op in ops.values())
    chat = ops[("post", "/v1/chat/completions")]
    assert {"400", "401", "404", "413", "429", "503"} <= set(chat["responses"])
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    assert chat["security"] == [{"apiKey": []}] and "security" not in ops[("get", "/health")]
    assert {"404", "409"} <= set(ops[("post", "/v1/ab/judge")]["responses"])
    req = spec["components"]["schemas"]["ChatRequest"]["properties"]
    limits = app.state.runtime.config.limits
    assert req["max_tokens"]["anyOf"][0]["maximum"] == limits.max_tokens
    assert req["model"]["enum"] == ["tiny", "tiny-b"]
    assert req["seed"]["anyOf"][0]["maximum"] == 2**63 - 1
