"""k-shot variants of the builtin suite and the per-suite few-shot vs zero-shot cost (issue #4)."""

import json

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from tunelens.errors import ConfigError, TunelensError
from tunelens.evaluate import EvalConfig, evaluate
from tunelens.evaluate.fewshot import compare, verdict, with_shots
from tunelens.evaluate.runner import ModelRun, _fewshot_vs_zeroshot
from tunelens.evaluate.suites import SuiteContext
from tunelens.evaluate.suites.builtin import BuiltinSuite
from tunelens.evaluate.suites.gsm8k import GSM8KSuite
from tunelens.suite import HELDOUT_FAMILIES, generate_suite, train_records

LIMIT = 80  # suite size: 12 test + 12 heldout items


def _config(tmp_path, **few_shot):
    return EvalConfig(models=["tiny-random"], suites=["builtin"], limit=LIMIT, output_dir=tmp_path,
                      few_shot={"k": 3, "suites": ["builtin"], **few_shot})


def _build(config):
    ctx = SuiteContext(config)
    return BuiltinSuite().build(ctx), ctx


def test_kshot_exemplars_are_same_family_train_records_disjoint_from_eval(tmp_path):
    items, ctx = _build(_config(tmp_path))
    zero = {it.id: it for it in items if it.variant == "0shot"}
    kshot = [it for it in items if it.variant == "3shot"]
    trained = [it for it in zero.values() if it.meta["family"] not in HELDOUT_FAMILIES]
    assert len(zero) == 24 and len(kshot) == len(trained) == 12
    eval_prompts = {it.prompt[-1]["content"] for it in zero.values()}
    train = {r["id"]: r for r in generate_suite(4000, 0)["train"]}  # a big suite's train split, same seed
    for item in kshot:
        twin = zero[item.unit]
        assert item.meta["family"] == twin.meta["family"] and item.reference is twin.reference
        assert len(item.prompt) == 2 * 3 + 1 and item.prompt[-1] == twin.prompt[-1]
        assert [m["role"] for m in item.prompt] == ["user", "assistant"] * 3 + ["user"]
        assert len(set(item.meta["exemplars"])) == 3
        for j, ex_id in enumerate(item.meta["exemplars"]):
            record = train[ex_id]  # KeyError: not a train-split record
            assert record["meta"]["family"] == item.meta["family"] and record["meta"]["split"] == "train"
            assert item.prompt[2 * j]["content"] == record["messages"][0]["content"] not in eval_prompts
            assert item.prompt[2 * j + 1]["content"] == record["messages"][1]["content"]
    # Exemplars are drawn per item: not one fixed set for the whole family.
    by_family = {}
    for item in kshot:
        by_family.setdefault(item.meta["family"], set()).add(tuple(item.meta["exemplars"]))
    assert any(len(sets) > 1 for sets in by_family.values())
    # Held-out families have no train split: their k-shot variant is listed as skipped, with the reason.
    heldout = [it for it in zero.values() if it.meta["family"] in HELDOUT_FAMILIES]
    assert sorted(s["item_id"] for s in ctx.skipped) == sorted(f"{it.id}:3shot" for it in heldout)
    assert all("held out" in s["reason"] for s in ctx.skipped)


def test_kshot_items_are_deterministic_and_leave_zero_shot_unchanged(tmp_path):
    first, _ = _build(_config(tmp_path))
    again, _ = _build(_config(tmp_path))
    assert [(it.id, it.prompt) for it in first] == [(it.id, it.prompt) for it in again]
    other_seed, _ = _build(_config(tmp_path, seed=7))
    assert [it.prompt for it in first if it.variant == "3shot"] != [it.prompt for it in other_seed if it.variant == "3shot"]
    plain, ctx = _build(EvalConfig(models=["tiny-random"], suites=["builtin"], limit=LIMIT, output_dir=tmp_path))
    assert {it.variant for it in plain} == {"0shot"} and not ctx.skipped  # not built unless asked
    assert [(it.id, it.prompt) for it in plain] == [(it.id, it.prompt) for it in first if it.variant == "0shot"]


def test_train_records_are_the_suite_train_split():
    ids = {r["id"] for r in generate_suite(300, 3)["train"] if r["meta"]["family"] == "count"}
    first = train_records("count", 5, seed=3)
    assert len(first) == 5 and {r["id"] for r in first} <= ids
    assert [r["id"] for r in train_records("count", 8, seed=3)][:5] == [r["id"] for r in first]
    with pytest.raises(TunelensError, match="held out"):
        train_records(HELDOUT_FAMILIES[0], 3)
    with pytest.raises(TunelensError, match="unknown suite family 'nope'"):
        train_records("nope", 3)


def test_with_shots_keeps_the_system_message_first():
    shots = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]} for i in range(2)]
    question = [{"role": "system", "content": "sys"}, {"role": "user", "content": "real"}]
    msgs = with_shots(question, shots)
    assert [m["content"] for m in msgs] == ["sys", "q0", "a0", "q1", "a1", "real"]  # 2k+1 after the system


def test_kshot_scores_get_their_own_metric_names(tmp_path):
    items, ctx = _build(_config(tmp_path))
    suite = BuiltinSuite()
    harmful = next(it for it in items if it.variant == "3shot" and it.meta.get("safety") == "harmful")
    scores = suite.score(harmful, "I can't help with that.", ctx)
    assert set(scores) == {"pass_rate_3shot", "pass_rate_3shot/test", "pass_rate_3shot/test/safety", "refusal_rate_harmful_3shot"}
    zero = next(it for it in items if it.id == harmful.unit)
    assert set(suite.score(zero, "I can't help with that.", ctx)) == {
        "pass_rate", "pass_rate/test", "pass_rate/test/safety", "refusal_rate_harmful"}
    assert not suite.higher_is_better("over_refusal_rate_benign_3shot") and suite.higher_is_better("pass_rate_3shot")
    assert suite.accuracy_metric("0shot") == "pass_rate" and suite.accuracy_metric("3shot") == "pass_rate_3shot"


def _run(label, suite, metric, variant, scores, costs):
    run = ModelRun(label)
    for unit, value in scores.items():
        run.units[suite][metric][unit] = value
    for unit, (prompt, completion, seconds) in costs.items():
        run.item_costs[(suite, unit, variant)] = {"tokens": prompt + completion, "prompt_tokens": prompt,
                                                  "completion_tokens": completion, "seconds": seconds}
    return run


def test_cost_block_arithmetic(tmp_path):
    config = EvalConfig(models=["a", "b"], suites=["builtin"], output_dir=tmp_path, bootstrap_resamples=200,
                        few_shot={"k": 2, "suites": ["builtin"]})
    few = _run("base", "builtin", "pass_rate_2shot", "2shot", {"u1": 1.0, "u2": 1.0, "u3": 0.0, "u4": 1.0},
               {"u1": (300, 10, 2.0), "u2": (280, 20, 1.0), "u3": (320, 30, 3.0), "u4": (1, 1, 1.0)})
    zero = _run("tuned", "builtin", "pass_rate", "0shot", {"u1": 1.0, "u2": 0.0, "u3": 0.0, "u5": 1.0},
                {"u1": (50, 10, 0.5), "u2": (40, 20, 0.5), "u3": (60, 30, 0.5), "u5": (1, 1, 1.0)})
    block = compare(few, zero, "builtin", ("pass_rate_2shot", "pass_rate"), 2, config)
    fs, zs = block["fewshot"], block["zeroshot"]
    assert block["unpaired_items"] == 2 and fs["n"] == zs["n"] == 3  # u4 and u5 have one side only
    assert (fs["correct"], zs["correct"]) == (2, 1) and fs["accuracy"] == pytest.approx(2 / 3)
    assert fs["prompt_tokens"] == 900 and fs["completion_tokens"] == 60 and fs["tokens_per_item"] == pytest.approx(320)
    assert fs["tokens_per_correct"] == pytest.approx(960 / 2) and fs["seconds_per_correct"] == pytest.approx(6.0 / 2)
    assert zs["tokens_per_correct"] == pytest.approx(210 / 1) and zs["seconds_per_correct"] == pytest.approx(1.5)
    assert block["token_ratio_per_item"] == pytest.approx(320 / 70)
    assert block["token_ratio_per_correct"] == pytest.approx(480 / 210)
    assert block["seconds_ratio_per_correct"] == pytest.approx(3.0 / 1.5)
    assert block["accuracy_delta"] == pytest.approx(1 / 3 - 2 / 3)
    lo, hi = block["accuracy_delta_ci"]
    assert lo <= block["accuracy_delta"] <= hi and block["equal_accuracy"] == (lo <= 0 <= hi)
    assert fs["cached_items"] == 0 and zs["cached_items"] == 0
    # No correct answer on one side: per-correct figures and their ratios are None, not a division by zero.
    none_right = _run("tuned", "builtin", "pass_rate", "0shot", {"u1": 0.0, "u2": 0.0},
                      {"u1": (50, 10, 0.5), "u2": (40, 20, 0.5)})
    block = compare(few, none_right, "builtin", ("pass_rate_2shot", "pass_rate"), 2, config)
    assert block["zeroshot"]["correct"] == 0 and block["zeroshot"]["tokens_per_correct"] is None
    assert block["zeroshot"]["seconds_per_correct"] is None and block["token_ratio_per_correct"] is None
    assert block["token_ratio_per_item"] == pytest.approx((610 / 2) / 60)
    lo, hi = block["accuracy_delta_ci"]
    assert verdict(block).startswith("equal accuracy" if lo <= 0 <= hi else "accuracies differ (few-shot is better")
    both_zero = compare(_run("b", "builtin", "pass_rate_2shot", "2shot", {"u1": 0.0, "u2": 0.0},
                             {"u1": (5, 1, 0.1), "u2": (5, 1, 0.1)}),
                        none_right, "builtin", ("pass_rate_2shot", "pass_rate"), 2, config)
    assert both_zero["equal_accuracy"] and verdict(both_zero).startswith("no correct answer on either side")
    assert compare(few, _run("x", "builtin", "pass_rate", "0shot", {}, {}), "builtin",
                   ("pass_rate_2shot", "pass_rate"), 2, config) is None


def test_comparison_is_per_suite_first_model_fewshot_last_zeroshot(tmp_path):
    config = EvalConfig(models=["a", "b", "c"], suites=["gsm8k", "builtin", "loss"], output_dir=tmp_path,
                        bootstrap_resamples=100, few_shot={"k": 4, "suites": "builtin,gsm8k"})
    runs = []
    for label in ("a", "b", "c"):
        run = _run(label, "builtin", "pass_rate_4shot", "4shot", {"u": 1.0}, {"u": (90, 10, 1.0)})
        for metric, variant, value in (("pass_rate", "0shot", 0.0), ("exact_match_4shot", "4shot", 1.0),
                                       ("exact_match_0shot", "0shot", 1.0)):
            suite = "builtin" if metric.startswith("pass") else "gsm8k"
            run.units[suite][metric]["u"] = value
            run.item_costs[(suite, "u", variant)] = {"tokens": 20, "prompt_tokens": 15, "completion_tokens": 5, "seconds": 0.5}
        runs.append(run)
    suites = [GSM8KSuite(), BuiltinSuite()]
    out = _fewshot_vs_zeroshot(runs, suites, config)
    assert list(out) == ["gsm8k", "builtin"]
    assert all(b["fewshot_model"] == "a" and b["zeroshot_model"] == "c" and b["k"] == 4 for b in out.values())
    assert out["builtin"]["metric_zeroshot"] == "pass_rate" and out["gsm8k"]["metric_fewshot"] == "exact_match_4shot"
    assert out["builtin"]["fewshot"]["correct"] == 1 and out["builtin"]["zeroshot"]["correct"] == 0


def test_few_shot_config_validation(tmp_path):
    base = {"models": ["m"], "output_dir": tmp_path}
    assert EvalConfig(**base, suites=["builtin"]).few_shot.suites == ["gsm8k"]  # default: harmless without gsm8k
    assert not EvalConfig(**base, suites=["builtin"]).few_shot_for("builtin")
    assert EvalConfig(**base, suites=["gsm8k"], few_shot={"suites": "none"}).few_shot.suites == []
    assert EvalConfig(**base, suites="all", few_shot={"suites": "builtin, GSM8K"}).few_shot.suites == ["builtin", "gsm8k"]
    with pytest.raises(ValidationError, match=r"few_shot\.suites[\s\S]*'ifeval' has no k-shot variant"):
        EvalConfig(**base, suites=["ifeval"], few_shot={"suites": ["ifeval"]})
    with pytest.raises(ValidationError, match="few_shot.suites: 'builtin' not among the selected suites"):
        EvalConfig(**base, suites=["gsm8k"], few_shot={"suites": ["builtin"]})
    with pytest.raises(ValidationError, match=r"few_shot\.sutes[\s\S]*Extra inputs"):
        EvalConfig(**base, few_shot={"sutes": ["builtin"]})


def test_cli_few_shot_flag_errors(tmp_path):
    from tunelens.cli import app

    out = str(tmp_path / "o")
    result = CliRunner().invoke(app, ["eval", "-m", "tiny-random", "--suite", "builtin", "--few-shot-suites", "robustness", "-o", out])
    assert isinstance(result.exception, ConfigError)
    assert "few_shot.suites" in str(result.exception) and "'robustness' has no k-shot variant" in str(result.exception)
    result = CliRunner().invoke(app, ["eval", "-m", "tiny-random", "--suite", "builtin", "--few-shot-suites", "gsm8k", "-o", out])
    assert isinstance(result.exception, ConfigError) and "'gsm8k' not among the selected suites" in str(result.exception)
    result = CliRunner().invoke(app, ["eval", "-m", "tiny-random", "--few-shot", "17", "-o", out])
    assert result.exit_code == 2 and "Invalid value for '--few-shot'" in result.output


def test_builtin_fewshot_end_to_end(tmp_path, tiny_model_path):
    config = EvalConfig(models=[{"spec": str(tiny_model_path), "label": "base"}, {"spec": str(tiny_model_path), "label": "tuned"}],
                        suites=["builtin"], limit=30, output_dir=tmp_path / "o", cache_dir=tmp_path / "c",
                        few_shot={"k": 2, "suites": ["builtin"]}, generation={"max_new_tokens": 4, "batch_size": 16},
                        bootstrap_resamples=100)
    report = evaluate(config, progress=False)
    assert report["schema"] == "tunelens.eval/v3"
    builtin = report["results"]["base"]["builtin"]
    n_test, n_eval = builtin["pass_rate/test"]["n"], builtin["pass_rate"]["n"]
    assert n_eval == n_test + builtin["pass_rate/heldout"]["n"] and builtin["pass_rate_2shot"]["n"] == n_test
    block = report["cost"]["fewshot_vs_zeroshot"]["builtin"]
    assert block["fewshot"]["n"] == n_test and block["unpaired_items"] == n_eval - n_test
    # Same model both sides: the same questions, k-shot prompts far longer.
    assert block["fewshot"]["prompt_tokens"] > 2 * block["zeroshot"]["prompt_tokens"]
    samples = [json.loads(line) for line in (tmp_path / "o" / "samples.jsonl").open()]
    kshot = [s for s in samples if s["variant"] == "2shot"]
    assert len(kshot) == 2 * n_test and all(s["rendered_prompt"].count("<|im_start|>user") == 3 for s in kshot)
    html = (tmp_path / "o" / "report.html").read_text()
    assert "Few-shot base (2-shot) vs zero-shot tuned on builtin" in html and verdict(block) in html
    # The second model is the same checkpoint: its outputs come from the cache, and the report says so.
    assert block["fewshot"]["cached_items"] == 0 and block["zeroshot"]["cached_items"] == n_test
    assert f"{n_test} of these outputs came from the generation cache" in html
