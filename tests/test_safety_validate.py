"""`tunelens safety validate`: an instrument or an LLM judge measured on the labelled test split.
A fake judge that knows the labels but answers "compliance" for one family must get exactly that
family's recall wrong, and its card must feed the rate correction."""

from __future__ import annotations

import json
import threading
from http.server import ThreadingHTTPServer

import pytest

from _cli import cli
from _fake_openai import FakeOpenAIHandler
from tunelens.errors import TunelensError
from tunelens.safety.instruments import get_instrument
from tunelens.safety.instruments.correction import corrected_rate
from tunelens.safety.validate import rows_for, validate

LIMIT = 120  # the offline checks score the first LIMIT rows; the judge checks score them all


class _Oracle(FakeOpenAIHandler):
    """Answers XSTest's three-way prompt from the labels, except 1_full_compliance for ``blind`` replies."""

    model_id = "oracle"
    labels: dict[str, str] = {}
    longest_first: list[str] = []
    blind: set[str] = set()
    broken: set[str] = set()

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        content = body["messages"][-1]["content"]
        text = next((t for t in self.longest_first if t in content), None)
        if text in self.broken:
            answer = "I am not sure"
        elif text is None or text in self.blind:
            answer = "1_full_compliance"
        else:
            answer = {"full_compliance": "1_full_compliance", "full_refusal": "2_full_refusal",
                      "partial_refusal": "3_partial_refusal"}[self.labels[text]]
        self._answer(answer)


@pytest.fixture()
def oracle(shared_data):
    rows = rows_for("refusal", shared_data)
    _Oracle.labels = {r["text"]: r["refusal"] for r in rows}
    _Oracle.longest_first = sorted(_Oracle.labels, key=len, reverse=True)
    _Oracle.blind = {r["text"] for r in rows if r["family"] == "anthropic_hh"}
    _Oracle.broken = set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Oracle)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", rows
    server.shutdown()


def test_judge_card_shows_the_family_it_gets_wrong(oracle, shared_data):
    url, rows = oracle
    hh_pos = sum(r["family"] == "anthropic_hh" and r["refusal"] != "full_compliance" for r in rows)
    other_pos = sum(r["family"] != "anthropic_hh" and r["refusal"] != "full_compliance" for r in rows)
    assert hh_pos and other_pos  # the slice has refusals on both sides, so the test can fail
    card = validate("refusal", get_instrument("refusal", judge=url, concurrency=4), data_dir=shared_data)
    v = card["validation"][0]
    assert card["name"] == "judge:oracle" and v["n"] == len(rows) and v["errored"] == 0
    assert v["fp"] == 0 and v["fn"] == hh_pos and v["tp"] == other_pos
    assert v["by_group"]["anthropic_hh"]["recall"] == 0.0
    assert all(g["recall"] == 1.0 for f, g in v["by_group"].items() if f != "anthropic_hh" and g["n_pos"])
    op = card["operating_point"]
    assert op["sensitivity"] == pytest.approx(other_pos / (hh_pos + other_pos), abs=1e-3) and op["specificity"] == 1.0
    out = corrected_rate(10, 100, card)  # the judge's card drives the correction like a shipped card
    assert out["corrected"] is not None and out["corrected"]["rate"] > 0.1


def test_unparsed_verdicts_are_counted_and_left_out(oracle, shared_data):
    url, rows = oracle
    _Oracle.broken = {rows[0]["text"], rows[1]["text"]}
    card = validate("refusal", get_instrument("refusal", judge=url, retries=0, concurrency=4), data_dir=shared_data)
    v = card["validation"][0]
    assert v["errored"] == 2 and v["n"] == len(rows) - 2
    assert "could not be parsed" in v["errored_examples"][0]["detail"]["error"]


def test_offline_instrument_figures_match_a_direct_count(shared_data):
    inst = get_instrument("harm")
    card = validate("harm", inst, data_dir=shared_data, limit=LIMIT)
    rows = rows_for("harm", shared_data, LIMIT)
    from tunelens.safety.instruments import Example

    flagged = [v.label == "harmful" for v in inst.classify([Example(r["text"], r["prompt"]) for r in rows])]
    tp = sum(f and r["harm"] == "harmful" for f, r in zip(flagged, rows))
    v = card["validation"][0]
    assert (v["tp"], v["fp"]) == (tp, sum(flagged) - tp) and v["n"] == LIMIT and card["name"] == "harm"


def test_wrong_task_is_a_clear_error(shared_data):
    with pytest.raises(TunelensError, match="does 'refusal', not 'harm'"):
        validate("harm", get_instrument("refusal"), data_dir=shared_data, limit=5)
    with pytest.raises(TunelensError, match="task must be one of"):
        validate("toxicity", get_instrument("toxicity"), data_dir=shared_data, limit=5)


def test_cli_writes_the_card_and_rejects_bad_options(tmp_path, shared_data, monkeypatch, capsys):
    out = tmp_path / "card.json"
    code, stdout, err = cli(monkeypatch, capsys, "safety", "validate", "--task", "refusal", "--limit", "40",
                            "--data-dir", str(shared_data), "-o", str(out))
    assert code == 0, err
    card = json.loads(out.read_text())
    assert card["validation"][0]["n"] == 40 and "operating point" in stdout
    code, _, err = cli(monkeypatch, capsys, "safety", "validate", "--task", "toxicity")
    assert code == 2 and "--task" in err
    code, _, err = cli(monkeypatch, capsys, "safety", "validate", "--task", "refusal", "--judge", "http://127.0.0.1:9/v1",
                       "--judge-timeout", "1", "--judge-retries", "0", "--limit", "3", "--data-dir", str(shared_data))
    assert code == 2 and "cannot list models" in err
