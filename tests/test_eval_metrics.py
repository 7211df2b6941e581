"""Small metric pieces: ROUGE-L, GSM8K answers, robustness perturbations, config validation."""

import random

import pytest
from pydantic import ValidationError

from tunelens.errors import TunelensError
from tunelens.evaluate import EvalConfig, gsm8k, robustness
from tunelens.evaluate.datafiles import data_file
from tunelens.evaluate.rouge import lcs_length, rouge_l


def test_lcs_and_rouge_l():
    assert lcs_length("a b c d e".split(), "a c e f".split()) == 3
    assert lcs_length([], ["a"]) == 0
    r = rouge_l("the cat sat on the mat", "the cat is on the mat")
    assert r["precision"] == pytest.approx(5 / 6) and r["recall"] == pytest.approx(5 / 6)
    assert rouge_l("Identical text!", "identical TEXT")["f1"] == 1.0
    assert rouge_l("nothing shared", "completely different")["f1"] == 0.0


def test_gsm8k_answers():
    assert gsm8k.reference_answer("blah\n#### 1,234") == "1234"
    assert gsm8k.extract_answer("So 3 + 4 = 7. The answer is 7.") == "7"
    assert gsm8k.extract_answer("It costs $1,200.00 in total") == "1200"
    assert gsm8k.extract_answer("The answer is: **-3.5**") == "-3.5"
    assert gsm8k.extract_answer("no numbers") is None
    assert gsm8k.exact_match("first 5 then 18", "18") == 1.0
    assert gsm8k.exact_match("The answer is 17.", "18") == 0.0
    with pytest.raises(ValueError):
        gsm8k.reference_answer("no final line")


def test_gsm8k_few_shot_messages():
    train = [{"question": f"q{i}", "answer": f"step <<1+1=2>>2\n#### {i}"} for i in range(10)]
    shots = gsm8k.pick_exemplars(train, 3, seed=0)
    msgs = gsm8k.build_messages("final?", shots)
    assert [m["role"] for m in msgs] == ["user", "assistant"] * 3 + ["user"]
    assert "<<" not in msgs[1]["content"] and msgs[1]["content"].endswith(f"The answer is {shots[0]['answer'][-1]}.")
    assert gsm8k.build_messages("q", []) == [{"role": "user", "content": f"q\n\n{gsm8k.INSTRUCTION}"}]


def test_robustness_perturbations_keep_the_task():
    prompt = "Write a haiku. Your response should contain 3 paragraphs. Do not include keywords sea."
    text, rewrites = robustness.paraphrase(prompt, random.Random(0))
    assert rewrites == 2 and "Make sure your answer has 3 paragraphs" in text and "sea" in text
    distracted = robustness.with_distractor(prompt, random.Random(0))
    assert distracted.startswith(prompt) and "gnore" in distracted.split(prompt)[1] or "orget" in distracted


def test_config_validation(tmp_path):
    cfg = EvalConfig(models=["tiny-random", "tiny-random"], suites="ifeval,gsm8k", output_dir=tmp_path)
    assert cfg.labels() == ["tiny-random", "tiny-random-2"] and cfg.suites == ["ifeval", "gsm8k"]
    with pytest.raises(ValidationError, match="unknown suite 'ifevall'"):
        EvalConfig(models=["x"], suites=["ifevall"], output_dir=tmp_path)
    with pytest.raises(ValidationError, match="extra"):
        EvalConfig(models=["x"], output_dir=tmp_path, limt=3)
    with pytest.raises(ValidationError, match="generation.max_new_tokens"):
        EvalConfig(models=["x"], output_dir=tmp_path, generation={"max_new_tokens": 0}).model_dump()
    with pytest.raises(ValidationError):
        EvalConfig(models=[], output_dir=tmp_path)


def test_missing_data_file_names_the_path(tmp_path):
    with pytest.raises(TunelensError, match=str(tmp_path / "gsm8k_test.jsonl")):
        data_file("gsm8k_test.jsonl", tmp_path)


def test_report_shows_examples_where_models_differ(tmp_path):
    from tunelens.evaluate.report import _differing_examples, write_report

    def sample(model, item, out, score):
        return {"model": model, "suite": "ifeval", "item_id": item, "prompt": [{"role": "user", "content": f"Q {item}"}],
                "output": out, "scores": {"prompt_level_strict_acc": score}}

    samples = [sample("base", "1", "same", 1.0), sample("tuned", "1", "same", 1.0),
               sample("base", "2", "bad <b>answer</b>", 0.0), sample("tuned", "2", "good answer", 1.0)]
    diff = _differing_examples(samples, ["base", "tuned"])
    assert [d[1] for d in diff] == ["2"]
    metric = {"value": 0.5, "ci": [0.0, 1.0], "n": 2}
    report = {"created": "now", "schema": "tunelens.eval/v1", "config": {"suites": ["ifeval"], "limit": 2},
              "models": {m: {"spec": m, "model_id": m, "fingerprint": "f"} for m in ("base", "tuned")},
              "results": {"base": {"ifeval": {"prompt_level_strict_acc": metric}},
                          "tuned": {"ifeval": {"prompt_level_strict_acc": {**metric, "value": 1.0}}}},
              "comparisons": [{"suite": "ifeval", "metric": "prompt_level_strict_acc", "a": "base", "b": "tuned",
                               "delta": 0.5, "ci": [0.0, 1.0], "p_value": 0.5, "significant": False, "wins": 1,
                               "losses": 0, "ties": 1, "higher_is_better": True}],
              "cost": {m: {"prompt_tokens": 1, "completion_tokens": 1, "generations": 2, "cached_generations": 0,
                           "tokens_per_s": 1.0, "latency_p50_s": 0.1, "latency_p95_s": 0.2, "peak_rss_mb": 10.0}
                       for m in ("base", "tuned")},
              "skipped": []}
    out = tmp_path / "report.html"
    write_report(report, samples, out)
    html = out.read_text()
    assert "Examples where the models differ (1 shown)" in html and "bad &lt;b&gt;answer&lt;/b&gt;" in html
    assert html.count("<img") == 2  # metric bars and the delta forest plot
