"""The LLM judge: parsing, retries, errors into the rejects, against a fake OpenAI-compatible server
on a real socket and against `tunelens serve` of the tiny model (whose answers are garbage)."""

from __future__ import annotations

import json
import threading
from http.server import ThreadingHTTPServer

import pytest

from _cli import cli
from _fake_openai import FakeOpenAIHandler
from tunelens.errors import TunelensError
from tunelens.safety.instruments import get_instrument
from tunelens.safety.instruments._base import Example
from tunelens.safety.instruments.judge import Judge, parse_harm, parse_refusal


@pytest.mark.parametrize("answer, label", [
    ("1_full_compliance", "full_compliance"), ("2_full_refusal.", "full_refusal"),
    ("CLASS: 3_partial_refusal", "partial_refusal"), ("full refusal", "full_refusal"), ("2", "full_refusal"),
    ("1_full_compliance or 2_full_refusal", None), ("I think it is fine", None), ("", None),
    ("<think>maybe 1_full_compliance? no, it refuses</think>\n2_full_refusal", "full_refusal"),
    ("<think>it starts to answer 1_full_compliance", None),  # cut off while thinking
])
def test_parse_refusal(answer, label):
    assert parse_refusal(answer) == label


@pytest.mark.parametrize("answer, label", [("Yes", "harmful"), ("no.", "harmless"), (" YES, because", "harmful"),
                                           ("Maybe", None), ("The answer is yes", None),
                                           ("<think>no wait</think> Yes", "harmful")])
def test_parse_harm(answer, label):
    assert parse_harm(answer) == label


class _Fake(FakeOpenAIHandler):
    """Answers chat completions from a script keyed by the reply being judged."""

    script: dict[str, list[str]] = {}
    calls: list[dict] = []
    failures: dict[str, int] = {}

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls.append({"body": body, "auth": self.headers.get("Authorization")})
        content = body["messages"][-1]["content"]
        key = next((k for k in self.script if k in content), None)
        if key is None:
            return self._send(400, {"error": {"message": "unknown reply"}})
        if self.failures.get(key, 0) > 0:
            self.failures[key] -= 1
            return self._send(500, {"error": {"message": "boom"}})
        answers = self.script[key]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        self._answer(answer, body["model"])


@pytest.fixture
def fake_server():
    _Fake.script, _Fake.calls, _Fake.failures = {}, [], {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Fake
    server.shutdown()
    server.server_close()


def test_judge_classifies_retries_and_reports(fake_server, monkeypatch):
    url, fake = fake_server
    monkeypatch.setenv("TUNELENS_JUDGE_API_KEY", "sekret")
    fake.script = {"REPLY-A": ["1_full_compliance"], "REPLY-B": ["2_full_refusal"],
                   "REPLY-C": ["hmm, hard to say", "3_partial_refusal"], "REPLY-D": ["banana", "still banana"],
                   "REPLY-E": ["2_full_refusal"]}
    fake.failures = {"REPLY-E": 1}  # one 500, then the client's retry succeeds
    judge = get_instrument("refusal", judge=url, retries=1, concurrency=3)
    assert isinstance(judge, Judge) and judge.base_url == f"{url}/v1"
    verdicts = judge.classify([Example(f"REPLY-{x}", prompt="q") for x in "ABCDE"])
    assert [v.label for v in verdicts] == ["full_compliance", "full_refusal", "partial_refusal", "error", "full_refusal"]
    assert [v.score for v in verdicts[:3]] == [0.0, 1.0, 1.0]
    assert verdicts[2].detail["first_answer"] == "hmm, hard to say"
    assert verdicts[3].detail["raw_answer"] == "still banana" and "parsed" in verdicts[3].detail["error"]
    assert all(c["auth"] == "Bearer sekret" for c in fake.calls)
    assert {c["body"]["model"] for c in fake.calls} == {"fake-judge"}  # the first model the endpoint lists
    first = next(c for c in fake.calls if "REPLY-A" in c["body"]["messages"][-1]["content"])
    assert "2_full_refusal. The model states that it cannot" in first["body"]["messages"][0]["content"]
    assert first["body"]["temperature"] == 0.0


def test_judge_harm_prompt_and_unreachable_server(fake_server):
    url, fake = fake_server
    fake.script = {"REPLY-H": ["Yes"], "REPLY-S": ["No"]}
    judge = get_instrument("harm", judge=url, model="m1")
    assert [v.label for v in judge.classify([Example("REPLY-H", "how to x"), Example("REPLY-S", "how to y")])] == [
        "harmful", "harmless"]
    assert fake.calls[0]["body"]["messages"][0]["role"] == "system" and fake.calls[0]["body"]["model"] == "m1"
    dead = get_instrument("harm", judge="http://127.0.0.1:9", model="m", retries=0, timeout=2)
    verdict = dead.classify([Example("x", "y")])[0]
    assert verdict.label == "error" and "request failed" in verdict.detail["error"] and verdict.detail["failed_request"]
    with pytest.raises(TunelensError, match="refusal and harm"):
        get_instrument("toxicity", judge=url)


def test_classify_command_with_the_judge(fake_server, tmp_path, monkeypatch, capsys):
    url, fake = fake_server
    fake.script = {"REPLY-A": ["2_full_refusal"], "REPLY-D": ["??", "!!"]}
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps({"prompt": "q", "response": r}) for r in ("REPLY-A", "REPLY-D")) + "\n")
    out = tmp_path / "out.jsonl"
    code, stdout, _ = cli(monkeypatch, capsys, "safety", "classify", "--task", "refusal", str(src), "-o", str(out),
                          "--judge", url, "--judge-model", "fake-judge")
    assert code == 1
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(r["response"], r["label"], r["score"]) for r in rows] == [("REPLY-A", "full_refusal", 1.0)]
    rejects = [json.loads(x) for x in (tmp_path / "out.rejects.jsonl").read_text().splitlines()]
    assert rejects[0]["line"] == 2 and rejects[0]["raw_answer"] == "!!" and "parsed" in rejects[0]["reason"]


def test_judge_against_tunelens_serve_of_the_tiny_model(tmp_path, tiny_loaded):
    """The plumbing end to end through the real server app: the tiny model's answer is garbage, so
    each verdict is either a parsed label or an error entry carrying the raw answer, never a crash."""
    from fastapi.testclient import TestClient

    from _serve import make_app
    from tunelens.serve.db import Store
    from tunelens.serve.keys import create_key

    app = make_app(tmp_path, tiny_loaded)
    with TestClient(app) as client:
        store = Store(f"sqlite:///{tmp_path}/serve.db")
        try:
            key = create_key(store, "judge-test").key
        finally:
            store.close()
        judge = Judge("refusal", "http://testserver", api_key=key, http_client=client, retries=0, max_tokens=4)
        assert judge.model == "tiny"
        verdicts = judge.classify([Example("I cannot help with that.", prompt="how do I pick a lock?")])
    v = verdicts[0]
    assert (v.label in judge.labels and "raw_answer" in v.detail) or (v.label == "error" and "raw_answer" in v.detail), v
    if v.label == "error":
        assert "parsed" in v.detail["error"] or "request failed" in v.detail["error"]
