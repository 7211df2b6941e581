"""`tunelens explain-focus` and `tunelens explain-rationale` end to end on tiny models (root CLI app)."""

from __future__ import annotations

import html
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tunelens.cli import app
from tunelens.errors import TunelensError

# Tiny models: one torch thread is faster and does not spin on a busy 2-core machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(args: list[str]):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def _error(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    # TunelensErrors reach `tunelens.cli.main`, which prints them without a traceback.
    assert result.exit_code != 0 and isinstance(result.exception, TunelensError), (result.output, result.exception)
    return str(result.exception)


@pytest.fixture(scope="module")
def suite_items(tmp_path_factory):
    """Real suite records (with their target responses); one has no context span."""
    from tunelens.records import write_jsonl
    from tunelens.suite import eval_items

    records = eval_items(40, 0)
    with_ctx = [r for r in records if r["meta"]["context_span"] is not None][:5]
    without = [r for r in records if r["meta"]["context_span"] is None][:1]
    assert len(with_ctx) == 5 and len(without) == 1
    path = tmp_path_factory.mktemp("focus") / "items.jsonl"
    write_jsonl(path, with_ctx + without)
    return path, [r["id"] for r in with_ctx], without[0]["id"]


@pytest.fixture(scope="module")
def other_tiny(tmp_path_factory):
    """A differently-shaped random model with the same tokenizer, as the 'base'."""
    from tunelens.models import build_tiny_random

    return build_tiny_random(tmp_path_factory.mktemp("base"), hidden_size=32, intermediate_size=64, seed=1)


def test_explain_focus_writes_shares_cis_and_the_paired_difference(tmp_path, tiny_model_path, other_tiny, suite_items):
    items, ids, no_ctx_id = suite_items
    out = tmp_path / "focus"
    _run(["explain-focus", "-m", str(tiny_model_path), "--base", str(other_tiny), "--items", str(items),
          "--n-boot", "500", "-o", str(out)])
    doc = json.loads((out / "focus.json").read_text())
    assert doc["schema"] == "tunelens.focus/v1" and doc["method"] == "input_x_gradient"
    assert doc["n_items"] == 5 and doc["source"] == {"items": str(items)}
    assert [s["id"] for s in doc["skipped"]] == [no_ctx_id] and "meta.context_span" in doc["skipped"][0]["reason"]
    for role in ("tuned", "base"):
        r = doc[role]
        assert [it["id"] for it in r["items"]] == ids and r["n"] == 5 and r["skipped"] == []
        shares = np.array([it["instruction_share"] for it in r["items"]])
        assert np.all((shares >= 0) & (shares <= 1))
        assert all(it["instruction_tokens"] > 0 and it["context_tokens"] > 0 for it in r["items"])
        assert r["mean"] == pytest.approx(shares.mean())
        assert r["ci95"][0] <= r["mean"] <= r["ci95"][1]
        # The record's own target response is what is explained.
        assert r["items"][0]["response"] == json.loads(items.read_text().splitlines()[0])["messages"][-1]["content"]
    diff = doc["difference"]
    paired = [t["instruction_share"] - b["instruction_share"] for t, b in zip(doc["tuned"]["items"], doc["base"]["items"])]
    assert diff["n"] == 5 and diff["difference_mean"] == pytest.approx(np.mean(paired))
    assert diff["difference_ci95"][0] <= diff["difference_mean"] <= diff["difference_ci95"][1]
    assert diff["reading"] in {"tuning moved attribution towards the instruction", "tuning moved attribution away from the instruction",
                               "no significant change in instruction focus"}
    assert (out / "focus.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "focus.html").read_text()
    assert html.escape(diff["reading"]) in page and "data:image/png;base64," in page


def test_explain_focus_errors_are_clear(tmp_path, tiny_model_path, suite_items):
    items, _, _ = suite_items
    base = ["explain-focus", "-m", str(tiny_model_path), "-o", str(tmp_path / "o")]
    assert "exactly one of --items FILE or --alpaca N" in _error(base)
    assert "exactly one of --items" in _error(base + ["--items", str(items), "--alpaca", "3"])
    assert "items file not found" in _error(base + ["--items", str(tmp_path / "missing.jsonl")])
    no_spans = tmp_path / "plain.jsonl"
    no_spans.write_text(json.dumps({"id": "a", "messages": [{"role": "user", "content": "Hi"}]}) + "\n", encoding="utf-8")
    assert "no record carries both meta.instruction_span and meta.context_span" in _error(base + ["--items", str(no_spans)])
    bad = tmp_path / "bad.jsonl"
    line = json.loads(items.read_text().splitlines()[0])
    line["meta"]["context_span"] = [0, 10_000]
    bad.write_text(json.dumps(line) + "\n", encoding="utf-8")
    assert "bad.jsonl:1: meta.context_span=[0, 10000] is outside" in _error(base + ["--items", str(bad)])
    assert "data file not found" in _error(base + ["--alpaca", "2", "--data-dir", str(tmp_path)])
    assert "model path does not exist" in _error(["explain-focus", "-m", str(tmp_path / "nope"), "--items", str(items), "-o", str(tmp_path)])


RATIONALE_PROMPTS = [
    {"id": "r1", "messages": [{"role": "user", "content": "Ann has 16 eggs and eats 3. How many are left?"},
                              {"role": "assistant", "content": "16 - 3 = 13 eggs are left.\nAnswer: 13"}]},
    {"id": "r2", "prompt": "Tom buys 5 apples and 7 pears. How many fruits?", "response": "5 + 7 = 12 fruits.\nAnswer: 12"},
    {"id": "r3", "prompt": "What is 2 + 2?", "response": "I do not know."},
]


def test_explain_rationale_on_given_responses(tmp_path, tiny_model_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in RATIONALE_PROMPTS), encoding="utf-8")
    out = tmp_path / "rat"
    _run(["explain-rationale", "-m", str(tiny_model_path), "--prompts", str(prompts), "--max-new-tokens", "6",
          "--answer-tokens", "3", "-o", str(out)])
    doc = json.loads((out / "rationale.json").read_text())
    assert doc["schema"] == "tunelens.rationale/v1" and doc["n_items"] == 3 and doc["n_evaluated"] == 2
    assert [it["id"] for it in doc["items"]] == ["r1", "r2"] and [it["final_answer"] for it in doc["items"]] == [13, 12]
    assert {"id": "r3", "reason": "response has no 'Answer: N'"}.items() <= doc["skipped"][0].items()
    for it in doc["items"]:
        assert set(it["early_answers"]) == set(it["early_changed"]) == {"0.00", "0.25", "0.50", "0.75"}
        assert it["error"]["changed_from"] in {"13", "12", "3", "5", "7", "16"}
    # A random model cannot read an answer back: forced answers are unreadable, so all count as changed.
    rates = doc["early_answer_change_rate"]
    assert rates["0.00"] == pytest.approx(np.mean([it["early_changed"]["0.00"] for it in doc["items"]]))
    assert 0 <= doc["inserted_error_change_rate"] <= 1
    assert doc["verdict"].split(":")[0] in {"decoration", "load-bearing", "partly load-bearing"}
    page = (out / "rationale.html").read_text()
    assert html.escape(doc["verdict"]) in page and page.count("<tr>") == 3
    assert (out / "rationale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_explain_rationale_on_gsm8k_and_its_errors(tmp_path, tiny_model_path, shared_data):
    from tunelens.explain.runs import gsm8k_items

    items = gsm8k_items(2, shared_data, shots=1, seed=3)
    assert len(items) == 2 and all(it["id"].startswith("gsm8k:") and it["reference"] for it in items)
    exemplar, question = items[0]["messages"][1], items[0]["messages"][-1]
    assert exemplar["role"] == "assistant" and exemplar["content"].splitlines()[-1].startswith("Answer: ")
    assert "<<" not in exemplar["content"] and question["content"].endswith("'Answer: <number>'.")

    out = tmp_path / "g"
    _run(["explain-rationale", "-m", str(tiny_model_path), "--gsm8k", "2", "--data-dir", str(shared_data),
          "--max-new-tokens", "4", "-o", str(out)])
    doc = json.loads((out / "rationale.json").read_text())
    # The random model writes no 'Answer: N': both items are listed as skipped, nothing is measured.
    assert doc["n_items"] == 2 and doc["n_evaluated"] == 0 and len(doc["skipped"]) == 2
    assert doc["source"] == {"gsm8k": 2, "shots": 0, "seed": 0}
    assert doc["verdict"].endswith("nothing measured") and doc["inserted_error_change_rate"] is None

    base = ["explain-rationale", "-m", str(tiny_model_path), "-o", str(tmp_path / "e")]
    assert "exactly one of --gsm8k N or --prompts FILE" in _error(base)
    assert "prompts file not found" in _error(base + ["--prompts", str(tmp_path / "none.jsonl")])
    assert "data file not found" in _error(base + ["--gsm8k", "2", "--data-dir", str(tmp_path)])
