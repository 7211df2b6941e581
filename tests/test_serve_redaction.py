"""Nothing a client sends or a model says reaches storage unredacted.

PII and secrets (the server's own `tl_...` key format included) go into every field the API
takes: messages (every role, string and content-part forms), context documents, stop strings,
`user`, feedback correction and preferred, the A/B prompt; and a model that leaks them answers
chats (plain and streamed) and A/B pairs, with output redaction off for the client. Then every
text column of every table is read back and searched. Runs on SQLite, and on PostgreSQL when
TUNELENS_TEST_PG_URL names a reachable server (`make test` starts one when it can).
"""

from __future__ import annotations

import json
import os
import uuid

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tunelens.serve.app import create_app
from tunelens.serve.config import ServeConfig
from tunelens.serve.keys import create_key

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAKE_KEY = "tl_0123456789ab_" + "Zq8" * 11  # the server's key format, not a real key
SECRETS = {
    "email": "jane.doe@example.com",
    "ssn": "123-45-6789",
    "phone": "+44 20 7946 0958",
    "card": "4111 1111 1111 1111",
    "iban": "GB82 WEST 1234 5698 7654 32",
    "ip": "192.168.10.254",
    "openai_key": "sk-proj-abcdefghijklmnopqrstuvwxyz0123",
    "tl_key_format": FAKE_KEY,
}
PII = " ".join(f"{k}: {v}." for k, v in SECRETS.items())


def _pg_url() -> str | None:
    return os.environ.get("TUNELENS_TEST_PG_URL") or None


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/redaction.db"
        return
    base = _pg_url()
    if not base:
        pytest.skip("no PostgreSQL: set TUNELENS_TEST_PG_URL (make test starts a local server when it can)")
    try:
        admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        name = "tl_redaction_" + uuid.uuid4().hex[:10]
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # driver missing or server down: say which
        pytest.skip(f"PostgreSQL at TUNELENS_TEST_PG_URL not usable: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    url = sa.make_url(base).set(database=name).render_as_string(hide_password=False)
    yield url
    sa.create_engine(url).dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture(scope="module")
def tiny_loaded(tiny_model_path):
    from tunelens.models import load_model

    return load_model(str(tiny_model_path))


def _leaky(app):
    """Make both served models answer with the PII, in chats, streams and A/B pairs."""
    from tunelens.generate import GenerationResult

    async def submit(prompt, params):
        return GenerationResult("Sure! " + PII, 10, 20, "eos", 0.01)

    async def stream(prompt, params):  # text deltas, then the result (MicroBatcher.stream's contract)
        for i in range(0, len(PII), 7):
            yield PII[i:i + 7]
        yield GenerationResult(PII, 10, 20, "eos", 0.01)

    for served in app.state.runtime.models.values():
        served.batcher.submit = submit
        served.batcher.stream = stream


def _dump(url: str) -> dict[str, str]:
    """Every text-like column of every table, as one string per table.column."""
    engine = sa.create_engine(url)
    out = {}
    try:
        insp = sa.inspect(engine)
        with engine.connect() as conn:
            for table in insp.get_table_names():
                for col in insp.get_columns(table):
                    if isinstance(col["type"], (sa.Integer, sa.Float, sa.DateTime, sa.Numeric, sa.Boolean)):
                        continue
                    values = conn.execute(sa.text(f'SELECT "{col["name"]}" FROM "{table}"')).scalars().all()
                    out[f"{table}.{col['name']}"] = "\n".join(
                        json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v for v in values)
    finally:
        engine.dispose()
    return out


def test_every_stored_text_is_redacted(db_url, tmp_path, tiny_loaded):
    cfg = ServeConfig.model_validate({
        "models": [{"name": "tiny", "path": "tiny-random"}, {"name": "tiny-b", "path": "tiny-random"}],
        "db_url": db_url, "rate_limit": {"enabled": False},
        # the client sees raw model output (the A/B case) and streams are token-by-token; the injection
        # guard only flags here (a message that is nothing but credentials and "my own key is ..." sits near its
        # threshold, and this test is about what is stored, not about blocking)
        "guardrails": {"pii": {"redact_output": False}, "toxicity": {"enabled": False},
                       "injection": {"document_action": "flag", "input_action": "flag"}}})
    app = create_app(cfg, preloaded={"tiny": tiny_loaded, "tiny-b": tiny_loaded})
    with TestClient(app) as client:
        key = create_key(app.state.runtime.store, "alice").key
        client.headers["Authorization"] = f"Bearer {key}"
        _leaky(app)
        everything = f"{PII} my own key is {key}"
        chat = {
            "model": "tiny", "max_tokens": 4, "user": everything,
            "stop": [SECRETS["email"], SECRETS["ssn"], FAKE_KEY, key],
            "documents": [everything, "plain document"],
            "messages": [
                {"role": "system", "content": everything},
                {"role": "developer", "content": everything},
                {"role": "user", "content": everything},
                {"role": "assistant", "content": everything},
                {"role": "tool", "content": everything},
                {"role": "user", "content": [{"type": "text", "text": everything}, {"type": "text", "text": "?"}]},
            ],
        }
        r = client.post("/v1/chat/completions", json=chat)
        assert r.status_code == 200, r.text
        assert SECRETS["email"] in r.json()["choices"][0]["message"]["content"]  # redact_output off: the client sees it
        cid = r.json()["id"]
        with client.stream("POST", "/v1/chat/completions", json={**chat, "stream": True}) as s:
            lines = [ln for ln in s.iter_lines() if ln]
        assert s.status_code == 200 and lines[-1] == "data: [DONE]"
        sid = json.loads(lines[-2][6:])["tunelens"]["exchange_id"]

        for body in ({"correction": everything}, {"preferred": everything, "rating": 2},
                     {"correction": everything, "preferred": everything, "rating": "down"}):
            assert client.post("/v1/feedback", json={"completion_id": cid, **body}).status_code == 200
        assert client.post("/v1/feedback", json={"completion_id": sid, "preferred": everything}).status_code == 200
        # there is no free-text comment field: sending one is refused and stores nothing
        r = client.post("/v1/feedback", json={"completion_id": cid, "rating": 1, "comment": everything})
        assert r.status_code == 400 and r.json()["error"]["param"] == "comment"

        pair = client.post("/v1/ab/pair", json={"prompt": everything, "max_tokens": 3})
        assert pair.status_code == 200, pair.text
        assert SECRETS["ssn"] in pair.json()["left"]
        assert client.post("/v1/ab/judge", json={"pair_id": pair.json()["pair_id"], "choice": "tie"}).status_code == 200

    dump = _dump(db_url)
    assert {"exchanges.request", "exchanges.response", "feedback.correction", "feedback.preferred",
            "ab_judgments.prompt", "ab_judgments.left_response", "ab_judgments.right_response"} <= set(dump)
    leaks = {(column, name) for column, text in dump.items()
             for name, value in {**SECRETS, "the caller's key": key, "its secret part": key.split("_", 2)[2]}.items()
             if value in text}
    assert not leaks, leaks
    # and the redaction happened (the rows are there, with placeholders), rather than nothing being stored
    for column in ("exchanges.request", "exchanges.response", "feedback.correction", "feedback.preferred",
                   "ab_judgments.prompt", "ab_judgments.left_response"):
        assert "[EMAIL]" in dump[column] and "[SECRET]" in dump[column], column
    stored = json.loads(dump["exchanges.request"].splitlines()[0])
    assert stored["params"]["stop"] == ["[EMAIL]", "[SSN]", "[SECRET]", "[SECRET]"]


def test_a_pasted_key_is_neither_seen_by_the_model_nor_returned(tmp_path, tiny_loaded):
    """Default PII guardrails: a tl_ key in a message is redacted before the model, and a model that
    says one anyway has it redacted from its answer (chat and A/B). The output toxicity filter is off here: this
    test is about redaction, and before toxicity version 3 some random keys made the answer score as toxic, which
    replaced it with the refusal message (seen once in CI; the instrument's tests now cover replies quoting keys)."""
    cfg = ServeConfig.model_validate({
        "models": [{"name": "tiny", "path": "tiny-random"}, {"name": "tiny-b", "path": "tiny-random"}],
        "db_url": f"sqlite:///{tmp_path}/keys.db", "rate_limit": {"enabled": False},
        "guardrails": {"toxicity": {"enabled": False}}})
    app = create_app(cfg, preloaded={"tiny": tiny_loaded, "tiny-b": tiny_loaded})
    seen: list = []
    with TestClient(app) as client:
        key = create_key(app.state.runtime.store, "alice").key
        client.headers["Authorization"] = f"Bearer {key}"
        _leaky(app)
        from tunelens.generate import GenerationResult

        async def submit(prompt, params):  # records what the model was given, answers with the key
            seen.append(json.dumps(prompt))
            return GenerationResult(f"your key is {key} and {FAKE_KEY}", 10, 20, "eos", 0.01)

        for served in app.state.runtime.models.values():
            served.batcher.submit = submit
        r = client.post("/v1/chat/completions", json={"model": "tiny", "messages": [
            {"role": "user", "content": f"why does {key} not work?"}]})
        assert r.status_code == 200, r.text
        answer = r.json()["choices"][0]["message"]["content"]
        pair = client.post("/v1/ab/pair", json={"prompt": f"key {key}", "max_tokens": 2}).json()
    secret = key.split("_", 2)[2]
    assert secret not in answer and FAKE_KEY not in answer and answer.count("[SECRET]") == 2
    assert secret not in pair["left"] + pair["right"]
    assert seen and not any(secret in s for s in seen)
    assert r.json()["tunelens"]["guardrails"]["pii_input"]["redacted"] == {"SECRET": 1}
