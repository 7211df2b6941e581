"""Instruction focus (base vs tuned) and rationale faithfulness."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from tunelens.errors import TunelensError
from tunelens.explain import alpaca_focus_items, compare_instruction_focus, instruction_focus, rationale_faithfulness
from tunelens.explain.focus import bootstrap_ci
from tunelens.explain.rationale import corrupt_number, final_answer, truncate_words

from _toy import FILLER, toy_model, trained_trigger_model, trigger_tokenizer

# Tiny models: one torch thread is faster and does not spin on a busy 2-core machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _focus_items(n: int = 8) -> list[dict]:
    """The trigger word is the 'instruction'; the filler words are the 'context'."""
    rng = random.Random(11)
    items = []
    for i in range(n):
        trigger = rng.choice(["apple", "banana"])
        context = " ".join(rng.sample(FILLER, 6))
        content = f"{trigger} {context}"
        answer = {"apple": "red", "banana": "yellow"}[trigger]
        messages = [{"role": "user", "content": content}, {"role": "assistant", "content": answer}]
        items.append({"id": f"f{i}", "messages": messages,
                      "meta": {"instruction_span": [0, len(trigger)], "context_span": [len(trigger) + 1, len(content)]}})
    return items


@pytest.mark.numeric
def test_tuning_moves_focus_to_the_instruction():
    tuned = trained_trigger_model()
    base = (toy_model(trigger_tokenizer(), seed=3), tuned[1])
    items = _focus_items()
    result = compare_instruction_focus(base, tuned, items, "input_x_gradient")
    t, b = result["tuned"], result["base"]
    assert len(t["items"]) == len(items) and t["items"][0]["instruction_tokens"] == 1
    assert t["items"][0]["context_tokens"] == 6 and t["length_share_mean"] == pytest.approx(1 / 7)
    # One instruction token of seven: the tuned model puts far more than 1/7 of the mass on it.
    assert t["mean"] > 2 * t["length_share_mean"] and t["mean"] > b["mean"] + 0.1, (t["mean"], b["mean"])
    assert t["ci95"][0] <= t["mean"] <= t["ci95"][1]
    assert result["difference_ci95"][0] > 0
    assert result["reading"] == "tuning moved attribution towards the instruction"


def test_focus_span_errors_name_the_item():
    model, tok = trained_trigger_model()
    item = _focus_items(1)[0]
    item["meta"]["context_span"] = [3, 400]
    with pytest.raises(TunelensError, match=r"item 0 \(f0\): meta.context_span=\[3, 400\] is outside"):
        instruction_focus(model, tok, [item])
    del item["meta"]["instruction_span"]
    with pytest.raises(TunelensError, match="meta.instruction_span must be"):
        instruction_focus(model, tok, [item])


def test_alpaca_items_mark_instruction_and_input(shared_data):
    items = alpaca_focus_items(shared_data / "alpaca_data.json", n=5)
    assert len(items) == 5
    for it in items:
        content = it["messages"][0]["content"]
        i0, i1 = it["meta"]["instruction_span"]
        c0, c1 = it["meta"]["context_span"]
        assert content[i0:i1].strip() and content[c0:c1].strip() and i1 < c0
        assert it["provenance"]["license"] == "CC-BY-NC-4.0" and isinstance(it["provenance"]["row"], int)


def test_bootstrap_ci_covers_the_mean():
    values = np.random.default_rng(0).normal(0.3, 0.1, 200)
    lo, hi = bootstrap_ci(values)
    assert lo < 0.3 < hi and hi - lo < 0.06


def test_rationale_parsing_helpers():
    assert final_answer("16 - 3 = 13. So 13 * 2 = 26.\nAnswer: 1,026") == ("16 - 3 = 13. So 13 * 2 = 26.\n", 1026.0)
    assert final_answer("no answer here") is None
    assert truncate_words("a b c d", 0.5) == "a b" and truncate_words("a b c d", 0.0) == ""
    prefix, old, new = corrupt_number("She has 16 eggs, eats 3, so 13 left.")
    assert (old, new) == ("3", "7") and prefix.endswith("eats 7")


ITEMS = [
    {"id": "q1", "messages": [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "16 - 3 = 13 eggs. 13 * 2 = 26.\nAnswer: 26"}]},
    {"id": "q2", "messages": [{"role": "user", "content": "Q2"}, {"role": "assistant", "content": "5 + 7 = 12 apples in total.\nAnswer: 12"}]},
    {"id": "q3", "messages": [{"role": "user", "content": "Q3"}, {"role": "assistant", "content": "I am not sure."}]},
]
TRUTH = {"Q1": 26.0, "Q2": 12.0}


def _question(prompt: str) -> str:
    return re.search(r"user\n(Q\d)", prompt).group(1)


def decorative_generator(prompts, max_new_tokens):
    """Knows the answer from the question alone; the rationale changes nothing."""
    return [f" {TRUTH[_question(p)]:g}" if p.rstrip().endswith("Answer:") else "\nAnswer: " + f"{TRUTH[_question(p)]:g}" for p in prompts]


def reading_generator(prompts, max_new_tokens):
    """Answers with the last number written in the rationale so far (none: 0)."""
    out = []
    for p in prompts:
        rationale = p.split("assistant\n", 1)[1]
        numbers = re.findall(r"\d+", rationale)
        last = numbers[-1] if numbers else "0"
        out.append(f" {last}" if p.rstrip().endswith("Answer:") else f" = {last}.\nAnswer: {last}")
    return out


def test_rationale_decoration_is_reported(tiny_model_path):
    from _toy import shared_model

    tok = shared_model(str(tiny_model_path)).tokenizer
    report = rationale_faithfulness(None, tok, ITEMS, generator=decorative_generator)
    assert report["n_evaluated"] == 2 and report["skipped"][0]["id"] == "q3"
    assert report["early_answer_change_rate"] == {"0.00": 0.0, "0.25": 0.0, "0.50": 0.0, "0.75": 0.0}
    assert report["inserted_error_change_rate"] == 0.0
    assert report["verdict"].startswith("decoration")


def test_rationale_that_carries_the_answer_is_load_bearing(tiny_model_path):
    from _toy import shared_model

    tok = shared_model(str(tiny_model_path)).tokenizer
    report = rationale_faithfulness(None, tok, ITEMS, generator=reading_generator)
    assert report["early_answer_change_rate"]["0.00"] == 1.0
    assert report["inserted_error_change_rate"] == 1.0
    q1 = report["items"][0]
    assert q1["error"]["changed_from"] == "13" and q1["error"]["answer"] != 26.0
    assert report["verdict"].startswith("load-bearing")


def test_rationale_runs_through_the_generation_engine(tiny_model_path):
    from _toy import shared_model

    tiny = shared_model(str(tiny_model_path))
    report = rationale_faithfulness(tiny.model, tiny.tokenizer, ITEMS[:1], max_new_tokens=8, answer_tokens=3)
    # A random model cannot answer: every forced answer is unreadable, i.e. changed.
    assert report["n_evaluated"] == 1
    assert set(report["items"][0]["early_answers"]) == {"0.00", "0.25", "0.50", "0.75"}
    assert report["early_answer_change_rate"]["0.00"] == 1.0
