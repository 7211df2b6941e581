"""`tunelens eval --judge URL [--judge-card TASK=CARD]`: an LLM judge scores the refusal/harm rates,
each rate names the judge, is corrected with the judge's validated card, and a verdict that errored is
left out of the rate and listed in skipped (never counted as a compliance)."""

from __future__ import annotations

import json
import threading
from http.server import ThreadingHTTPServer

import pytest

from _fake_openai import FakeOpenAIHandler
from tunelens.errors import ConfigError, TunelensError
from tunelens.evaluate import EvalConfig, evaluate


class _RuleJudge(FakeOpenAIHandler):
    """Judges by the request being answered: ``rules`` maps a substring of the QUESTION to the answer."""

    rules: dict[str, str] = {}
    default = "1_full_compliance"
    calls = 0

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls += 1
        question = body["messages"][-1]["content"].split("QUESTION:", 1)[-1].split("RESPONSE:", 1)[0]
        answer = next((a for key, a in self.rules.items() if key in question), self.default)
        self._answer(answer, body["model"])


@pytest.fixture
def judge_url():
    _RuleJudge.rules, _RuleJudge.calls = {}, 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RuleJudge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _card(tmp_path, name="judge:fake-judge", task="refusal", se=0.8, sp=0.9):
    path = tmp_path / f"{task}-{name.replace(':', '_')}.json"
    path.write_text(json.dumps({"task": task, "name": name, "operating_point": {
        "sensitivity": se, "specificity": sp, "n_pos": 200, "n_neg": 400}}))
    return path


def _config(tmp_path, shared_data, **extra):
    from tunelens.config_files import validate

    return validate(EvalConfig, dict(models=["tiny-random"], suites=["safety"], output_dir=tmp_path / "out",
                                     data_dir=shared_data, limit=3, generation={"max_new_tokens": 4},
                                     use_cache=False, bootstrap_resamples=200, **extra), "eval config", "options")


def test_the_judge_config_is_validated_naming_the_field(tmp_path, shared_data, judge_url):
    ok = _config(tmp_path, shared_data, judge={"url": judge_url, "cards": {"refusal": str(_card(tmp_path))}})
    assert ok.judge.tasks == ["refusal", "harm"] and ok.judge.cards["refusal"].is_file()
    with pytest.raises(ConfigError, match=r"judge\.url.*not an http"):
        _config(tmp_path, shared_data, judge={"url": "localhost:8000"})
    with pytest.raises(ConfigError, match=r"cards\.refusal.*is not a file"):
        _config(tmp_path, shared_data, judge={"url": judge_url, "cards": {"refusal": str(tmp_path / "nope.json")}})
    with pytest.raises(ConfigError, match=r"cards\.refusal.*card of task 'harm'"):
        _config(tmp_path, shared_data, judge={"url": judge_url, "cards": {"refusal": str(_card(tmp_path, task="harm"))}})
    with pytest.raises(ConfigError, match=r"cards\.refusal.*'refusal', not of an LLM judge"):
        _config(tmp_path, shared_data, judge={"url": judge_url, "cards": {"refusal": str(_card(tmp_path, name="refusal"))}})
    with pytest.raises(ConfigError, match=r"cards\.harm: the judge does not score harm"):
        _config(tmp_path, shared_data, judge={"url": judge_url, "tasks": ["refusal"],
                                              "cards": {"harm": str(_card(tmp_path, task="harm"))}})
    with pytest.raises(ConfigError, match=r"instruments and judge both choose the refusal"):
        _config(tmp_path, shared_data, judge={"url": judge_url}, instruments={"refusal": "refusal-lm"})


def test_rates_are_judged_corrected_and_errored_verdicts_left_out(tmp_path, shared_data, judge_url):
    from tunelens.evaluate.suites import SuiteContext
    from tunelens.evaluate.suites.safety import SafetySuite

    cfg = _config(tmp_path, shared_data, judge={"url": judge_url, "tasks": ["refusal"],
                                                "cards": {"refusal": str(_card(tmp_path))}})
    items = SafetySuite().build(SuiteContext(cfg))
    harmful = [i for i in items if i.meta["safety"] == "harmful"]
    benign = [i for i in items if i.meta["safety"] == "benign"]
    assert len(harmful) == 3 and benign
    # The first harmful request's reply cannot be parsed (twice); the others are refused; benign ones answered.
    _RuleJudge.rules = {harmful[0].prompt[-1]["content"][:60]: "banana",
                        **{i.prompt[-1]["content"][:60]: "2_full_refusal" for i in harmful[1:]}}
    report = evaluate(cfg, progress=False)
    res = report["results"]["tiny-random"]["safety"]
    harm_rate = res["refusal_rate_harmful"]
    assert harm_rate["value"] == pytest.approx(1.0) and harm_rate["n"] == 2  # the errored verdict is left out
    inst = harm_rate["instrument"]
    assert inst["instrument"] == "judge:fake-judge" and (inst["k"], inst["n"]) == (2, 2)
    assert "sensitivity 0.80, specificity 0.90" in inst["error"] and inst["corrected"] is not None
    benign_rate = res["over_refusal_rate_benign"]
    assert benign_rate["value"] == pytest.approx(0.0) and benign_rate["instrument"]["instrument"] == "judge:fake-judge"
    skipped = [s for s in report["skipped"] if s["item_id"] == harmful[0].id]
    assert len(skipped) == 1 and "refusal_rate_harmful not scored" in skipped[0]["reason"]
    assert "could not be parsed twice" in skipped[0]["reason"] and "banana" in skipped[0]["reason"]
    assert _RuleJudge.calls == 2 * 1 + len(items) - 1  # the unparseable one was asked twice, the others once


def test_without_a_card_the_rate_is_raw_and_says_how_to_get_one(tmp_path, shared_data, judge_url):
    report = evaluate(_config(tmp_path, shared_data, judge={"url": judge_url, "tasks": ["refusal"]}), progress=False)
    inst = report["results"]["tiny-random"]["safety"]["refusal_rate_harmful"]["instrument"]
    assert inst["instrument"] == "judge:fake-judge" and inst["corrected"] is None
    assert "instrument error unknown" in inst["error"] and f"--judge {judge_url}" in inst["error"]


def test_a_card_of_another_judge_or_a_dead_endpoint_fails_before_generating(tmp_path, shared_data, judge_url):
    cfg = _config(tmp_path, shared_data, judge={"url": judge_url, "cards": {"refusal": str(_card(tmp_path, name="judge:big-one"))}})
    with pytest.raises(TunelensError, match=r"measured on 'judge:big-one', but the judge at .* is 'judge:fake-judge'"):
        evaluate(cfg, progress=False)
    dead = _config(tmp_path, shared_data, judge={"url": "http://127.0.0.1:9", "model": "m", "timeout": 2, "retries": 0})
    with pytest.raises(TunelensError, match=r"refusal judge at http://127.0.0.1:9 .* cannot be reached"):
        evaluate(dead, progress=False)
    assert _RuleJudge.calls == 0 and not (tmp_path / "out" / "samples.jsonl").exists()


def test_the_cli_takes_the_judge_and_names_a_bad_card_option(tmp_path, shared_data, judge_url, monkeypatch, capsys):
    from _cli import cli

    def run(*args):
        code, out, err = cli(monkeypatch, capsys, *args)
        return code, " ".join((out + err).replace("│", " ").split())  # typer's error box, unwrapped

    base = ("eval", "-m", "tiny-random", "--suite", "safety", "--limit", "2", "--max-new-tokens", "4", "--no-cache",
            "--data-dir", str(shared_data), "-o", str(tmp_path / "cli"))
    code, out = run(*base, "--judge-card", "refusal=x.json")
    assert code == 2 and "need --judge URL" in out
    code, out = run(*base, "--judge", judge_url, "--judge-card", "refusal")
    assert code == 2 and "TASK=CARD.json" in out
    code, out = run(*base, "--judge", judge_url, "--judge-task", "refusal", "--judge-card", f"refusal={_card(tmp_path)}")
    assert code == 0, out
    results = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert results["results"]["tiny-random"]["safety"]["refusal_rate_harmful"]["instrument"]["instrument"] == "judge:fake-judge"


class _FailingJudge(FakeOpenAIHandler):
    """Lists its model, then answers every chat completion with a server error."""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        self._send(500, {"error": {"message": "overloaded"}})


def test_a_judge_that_keeps_failing_stops_the_evaluation_and_unparsed_answers_do_not(tmp_path, judge_url):
    from tunelens.evaluate.config import JudgeConfig
    from tunelens.evaluate.instruments import MAX_JUDGE_FAILURES, flags, unscored, using

    server = ThreadingHTTPServer(("127.0.0.1", 0), _FailingJudge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dead = JudgeConfig(url=f"http://127.0.0.1:{server.server_address[1]}", tasks=["refusal"], retries=0, concurrency=1)
        with using(None, judge=dead):
            out, _ = flags("refusal", ["a reply"] * (MAX_JUDGE_FAILURES - 1), ["a question"] * (MAX_JUDGE_FAILURES - 1))
            assert out == [None] * (MAX_JUDGE_FAILURES - 1)  # left out, not counted as compliance ...
            assert all("request failed" in u["error"] for u in unscored())
            with pytest.raises(TunelensError, match=f"failed {MAX_JUDGE_FAILURES} requests in a row"):
                flags("refusal", ["one more"], ["a question"])  # ... until the tenth failure in a row stops it
    finally:
        server.shutdown()
        server.server_close()
    # answers that cannot be parsed are not transport failures: they never stop an evaluation
    _RuleJudge.default = "banana"
    try:
        alive = JudgeConfig(url=judge_url, tasks=["refusal"], concurrency=1)
        with using(None, judge=alive):
            out, _ = flags("refusal", ["a reply"] * (MAX_JUDGE_FAILURES + 2), ["a question"] * (MAX_JUDGE_FAILURES + 2))
        assert out == [None] * (MAX_JUDGE_FAILURES + 2)
    finally:
        _RuleJudge.default = "1_full_compliance"
