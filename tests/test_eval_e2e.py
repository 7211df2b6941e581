"""End to end: the tiny model on --limit 5 of every suite, the cache, the report, bad input."""

import json
import math
import os
import subprocess
import sys

import pytest

from tunelens.errors import TunelensError
from tunelens.evaluate import SUITES, EvalConfig, evaluate
from tunelens.evaluate.config import builtin_available
from tunelens.models import build_tiny_random

METRIC_KEYS = {"value", "ci", "n"}


@pytest.fixture(scope="module")
def short_context_model(tmp_path_factory):
    """A second tiny model whose 512-token context cannot hold GSM8K's 5-shot prompts."""
    return build_tiny_random(tmp_path_factory.mktemp("tiny") / "short", hidden_size=32, max_position_embeddings=512, seed=1)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_path, short_context_model, shared_data):
    out = tmp_path_factory.mktemp("eval")
    config = EvalConfig(models=[{"spec": str(tiny_model_path), "label": "base"},
                                {"spec": str(short_context_model), "label": "tuned"}],
                        suites=["all"], limit=5, output_dir=out / "run", cache_dir=out / "cache",
                        data_dir=shared_data, generation={"max_new_tokens": 8, "batch_size": 8},
                        bootstrap_resamples=200)
    return config, evaluate(config, progress=False)


def test_every_suite_reports_metrics_with_cis(run):
    config, report = run
    assert report["schema"] == "tunelens.eval/v3"
    expected = set(SUITES) if builtin_available() else set(SUITES) - {"builtin"}
    for label in ("base", "tuned"):
        assert set(report["results"][label]) == expected
        for suite, metrics in report["results"][label].items():
            assert metrics, suite
            for name, entry in metrics.items():
                assert METRIC_KEYS <= set(entry) <= METRIC_KEYS | {"instrument"}, (suite, name)
    # a refusal rate says which instrument read it and its error (or that the error is unknown)
    inst = report["results"]["base"]["over_refusal"]["over_refusal_rate"]["instrument"]
    assert inst["task"] == "refusal" and inst["n"] == 5 and inst["error"]
    ifeval = report["results"]["base"]["ifeval"]
    assert ifeval["prompt_level_strict_acc"]["n"] == 5 and ifeval["inst_level_strict_acc"]["n"] >= 5
    assert report["results"]["base"]["safety"]["refusal_rate_harmful"]["n"] == 5
    assert report["results"]["base"]["safety"]["over_refusal_rate_benign"]["n"] == 5
    loss = report["results"]["base"]["loss"]
    assert loss["loss"]["value"] > 5  # a random model is near uniform over a 49k vocabulary
    # exp of the same stored loss; 1e-6 covers the truncated e and the stored rounding.
    assert loss["perplexity"]["value"] == pytest.approx(math.exp(loss["loss"]["value"]), rel=1e-6)
    tox = report["results"]["base"]["toxicity"]
    assert tox["toxic_rate"]["n"] == 5 and tox["toxic_rate_all_outputs"]["n"] > 40  # every generation of the run
    assert set(report["results"]["base"]["robustness"]) >= {"acc_original", "drop_paraphrased", "drop_distractor"}
    assert report["models"]["base"]["fingerprint"] != report["models"]["tuned"]["fingerprint"]


def test_too_long_prompts_are_skipped_with_a_reason(run):
    _, report = run
    gsm = [s for s in report["skipped"] if s["model"] == "tuned" and s["suite"] == "gsm8k"]
    assert len(gsm) == 5 and all("5shot" in s["item_id"] for s in gsm)
    assert "context" in gsm[0]["reason"]
    assert "exact_match_5shot" not in report["results"]["tuned"]["gsm8k"]
    assert report["results"]["tuned"]["gsm8k"]["exact_match_0shot"]["n"] == 5


def test_comparisons_are_paired_and_complete(run):
    _, report = run
    comps = report["comparisons"]
    assert comps and all(c["a"] == "base" and c["b"] == "tuned" for c in comps)
    c = next(c for c in comps if c["suite"] == "ifeval" and c["metric"] == "prompt_level_strict_acc")
    assert c["wins"] + c["losses"] + c["ties"] == c["n"] == 5
    assert {"delta", "ci", "p_value", "significant"} <= set(c)
    over = next(c for c in comps if c["metric"] == "over_refusal_rate_benign")
    assert over["higher_is_better"] is False


def test_outputs_cost_and_cache(run):
    config, report = run
    out = config.output_dir
    samples = [json.loads(line) for line in (out / "samples.jsonl").open()]
    assert {s["model"] for s in samples} == {"base", "tuned"}
    assert all({"prompt", "output", "scores", "suite", "item_id"} <= set(s) for s in samples)
    html = (out / "report.html").read_text()
    assert "<img" in html and "Comparisons" in html and "Skipped" in html
    assert json.loads((out / "results.json").read_text())["results"] == report["results"]
    cost = report["cost"]["base"]
    assert cost["prompt_tokens"] > 0 and cost["completion_tokens"] > 0 and cost["peak_rss_mb"] > 50
    assert cost["latency_p95_s"] >= cost["latency_p50_s"] > 0
    # suites=all with the default few_shot.suites: only GSM8K gets a k-shot variant
    assert list(report["cost"]["fewshot_vs_zeroshot"]) == ["gsm8k"]
    fz = report["cost"]["fewshot_vs_zeroshot"]["gsm8k"]
    # base's 5-shot prompts fit its context, tuned's 0-shot ones too: the cost comparison pairs them
    assert fz["fewshot_model"] == "base" and fz["zeroshot_model"] == "tuned" and fz["fewshot"]["n"] == 5
    assert fz["fewshot"]["prompt_tokens"] > 3 * fz["zeroshot"]["prompt_tokens"]
    # Rerun: every generation comes from the cache and the scores are the same.
    again = evaluate(config.model_copy(update={"output_dir": out.parent / "rerun"}), progress=False)
    for label in ("base", "tuned"):
        assert again["cost"][label]["cached_generations"] == again["cost"][label]["generations"] > 0
        assert again["cost"][label]["speed_source"].startswith("cache")
        assert report["cost"][label]["speed_source"] == "this run"
    assert again["results"]["base"]["ifeval"] == report["results"]["base"]["ifeval"]
    # ... and every log-probability (TruthfulQA, BBQ, loss) too: no forward pass, the same figures
    for label in ("base", "tuned"):
        first, rerun = report["cost"][label]["cached_logprobs"], again["cost"][label]["cached_logprobs"]
        assert first["found"] == 0 and first["looked_up"] > 0
        assert rerun["found"] == rerun["looked_up"] == first["looked_up"]
        for suite in ("truthfulqa_mc", "bbq", "loss"):
            assert again["results"][label][suite] == report["results"][label][suite]
    off = evaluate(config.model_copy(update={"output_dir": out.parent / "nocache", "use_cache": False}), progress=False)
    assert off["cost"]["base"]["cached_logprobs"] == {"found": 0, "looked_up": 0}
    assert off["cost"]["base"]["cached_generations"] == 0


def test_fewshot_vs_zeroshot_cost_single_model(tmp_path, tiny_model_path, shared_data):
    config = EvalConfig(models=[str(tiny_model_path)], suites=["gsm8k"], limit=3, output_dir=tmp_path / "o",
                        cache_dir=tmp_path / "c", data_dir=shared_data, few_shot={"k": 2},
                        generation={"max_new_tokens": 4}, bootstrap_resamples=100)
    fz = evaluate(config, progress=False)["cost"]["fewshot_vs_zeroshot"]["gsm8k"]
    assert fz["k"] == 2 and fz["fewshot"]["n"] == fz["zeroshot"]["n"] == 3
    assert fz["fewshot"]["prompt_tokens"] > 2 * fz["zeroshot"]["prompt_tokens"]
    assert fz["token_ratio_per_item"] > 2


def test_model_that_cannot_load(tmp_path, shared_data):
    config = EvalConfig(models=[str(tmp_path / "no-such-model")], suites=["safety"], limit=1,
                        output_dir=tmp_path / "o", data_dir=shared_data)
    with pytest.raises(TunelensError):
        evaluate(config, progress=False)


def _cli(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", "from tunelens.cli import main; main()", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_cli_bad_input_gives_clear_errors(tmp_path):
    proc = _cli("eval", "-m", "tiny-random", "--suite", "ifevl", "-o", str(tmp_path / "o"))
    assert proc.returncode == 2 and "unknown suite 'ifevl'" in proc.stderr and "Traceback" not in proc.stderr
    proc = _cli("eval", "-m", "tiny-random", "--suite", "gsm8k", "-o", str(tmp_path / "o"),
                "--data-dir", str(tmp_path / "nodata"))
    assert proc.returncode == 2 and str(tmp_path / "nodata" / "gsm8k_test.jsonl") in proc.stderr.replace("\n", "")
    assert "Traceback" not in proc.stderr


def test_chosen_pairs_are_compared_and_bad_pairs_named(tmp_path, tiny_model_path, short_context_model):
    # comparisons: [a, b] pairs by label (the rl stage's base/sft/tuned); unknown labels and a model
    # compared with itself are config errors naming the pair; the CLI takes --compare A:B.
    from pydantic import ValidationError

    models = [{"spec": str(tiny_model_path), "label": "base"}, {"spec": str(short_context_model), "label": "sft"},
              {"spec": str(tiny_model_path), "label": "tuned"}]
    config = EvalConfig(models=models, suites=["builtin"], limit=40, output_dir=tmp_path / "o", cache_dir=tmp_path / "c",
                        generation={"max_new_tokens": 6, "batch_size": 8}, bootstrap_resamples=200,
                        comparisons=[("base", "sft"), ("sft", "tuned")])
    report = evaluate(config, progress=False)
    assert {(c["a"], c["b"]) for c in report["comparisons"]} == {("base", "sft"), ("sft", "tuned")}
    c = next(c for c in report["comparisons"] if (c["a"], c["b"]) == ("sft", "tuned") and c["metric"] == "pass_rate")
    assert c["value_a"] == report["results"]["sft"]["builtin"]["pass_rate"]["value"]
    assert c["delta"] == pytest.approx(c["value_b"] - c["value_a"], abs=1e-9)
    assert EvalConfig(models=models, output_dir=tmp_path).pairs() == [("base", "sft"), ("base", "tuned")]
    with pytest.raises(ValidationError, match=r"comparisons\[1\]: unknown model label\(s\) \['rl'\]"):
        EvalConfig(models=models, output_dir=tmp_path, comparisons=[("base", "sft"), ("sft", "rl")])
    with pytest.raises(ValidationError, match=r"comparisons\[0\]: compares 'sft' with itself"):
        EvalConfig(models=models, output_dir=tmp_path, comparisons=[("sft", "sft")])
    proc = _cli("eval", "-m", f"base={tiny_model_path}", "-m", f"b={short_context_model}", "--suite", "builtin",
                "--limit", "40", "--max-new-tokens", "4", "-o", str(tmp_path / "cli"), "--compare", "b:base")
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert {(c["a"], c["b"]) for c in saved["comparisons"]} == {("b", "base")}
    assert "Δ base - b" in proc.stdout
    proc = _cli("eval", "-m", f"base={tiny_model_path}", "--suite", "builtin", "-o", str(tmp_path / "x"), "--compare", "base")
    assert proc.returncode == 2 and "A:B" in proc.stderr and "Traceback" not in proc.stderr
