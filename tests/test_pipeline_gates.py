"""Guard metrics: a planted regression marks the run REGRESSED (summary, report, exit code); the
config lists unknown guards; the report opens with the verdicts."""

from __future__ import annotations

import json

import pytest
import yaml

from _cli import cli


def _comp(suite, metric, a, b, ci, hib=True, n=150):
    return {"suite": suite, "metric": metric, "a": "base", "b": "tuned", "value_a": a, "value_b": b, "delta": b - a,
            "ci": ci, "significant": bool(ci[0] > 0 or ci[1] < 0), "n": n, "higher_is_better": hib,
            "p_value": 0.01, "wins": 1, "losses": 1, "ties": 1}


def _entry(v, ci=None, n=150):
    return {"value": v, "ci": ci, "n": n}


def _planted_run(tmp_path, regress: bool):
    """A run directory with results where over-refusal rose significantly (regress) or did not."""
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    over_ci = [0.20, 0.45] if regress else [-0.05, 0.10]
    over_tuned = 0.35 if regress else 0.05
    results = {
        "config": {"suites": ["ifeval", "over_refusal"]},
        "results": {
            "base": {"ifeval": {"prompt_level_loose_acc": _entry(0.30, [0.2, 0.4])},
                     "over_refusal": {"over_refusal_rate": _entry(0.02, [0.0, 0.05])}},
            "tuned": {"ifeval": {"prompt_level_loose_acc": _entry(0.40, [0.3, 0.5])},
                      "over_refusal": {"over_refusal_rate": _entry(over_tuned, [0.0, 0.5])}}},
        "comparisons": [_comp("ifeval", "prompt_level_loose_acc", 0.30, 0.40, [0.02, 0.18]),
                        _comp("over_refusal", "over_refusal_rate", 0.02, over_tuned, over_ci, hib=False)],
    }
    (run / "eval" / "results.json").write_text(json.dumps(results))
    samples = []
    for item, (b, t) in {"coconot:1": (0.0, 1.0), "coconot:2": (0.0, 0.0), "coconot:3": (1.0, 0.0)}.items():
        for label, v in (("base", b), ("tuned", t)):
            samples.append({"model": label, "suite": "over_refusal", "item_id": item, "prompt": [
                {"role": "user", "content": f"How do I kill time on {item}?"}],
                "output": f"{label} says {'I cannot help with that' if v else 'read a book'} ({item})",
                "scores": {"over_refusal_rate": v}})
    (run / "eval" / "samples.jsonl").write_text("\n".join(json.dumps(s) for s in samples) + "\n")
    (run / "config.yaml").write_text(yaml.safe_dump({"evaluate": {"guards": [
        "ifeval/prompt_level_loose_acc", "over_refusal/over_refusal_rate", "truthfulqa_mc/mc2"]}}))
    return run


def test_planted_regression_marks_the_run_regressed(tmp_path):
    from tunelens.pipeline.summary import build_summary, status_line

    s = build_summary(_planted_run(tmp_path, regress=True))
    assert s["status"] == "REGRESSED"
    by = {g["guard"]: g["status"] for g in s["gates"]}
    assert by == {"ifeval/prompt_level_loose_acc": "improved", "over_refusal/over_refusal_rate": "regressed",
                  "truthfulqa_mc/mc2": "not evaluated"}
    assert "over_refusal/over_refusal_rate" in status_line(s) and "not evaluated: truthfulqa_mc/mc2" in status_line(s)
    assert any("Over-refusal" in line for line in s["verdicts"]["regressed"])
    assert any("IFEval prompt-level loose" in line for line in s["verdicts"]["improved"])


def test_a_rise_inside_the_ci_is_not_a_regression(tmp_path):
    from tunelens.pipeline.summary import build_summary

    s = build_summary(_planted_run(tmp_path, regress=False))
    assert s["status"] == "PASSED"
    assert any("Over-refusal" in line for line in s["verdicts"]["not concluded"])


def test_report_opens_with_verdicts_and_shows_the_regressed_items(tmp_path):
    from tunelens.pipeline.report import write_report

    html = write_report(_planted_run(tmp_path, regress=True)).read_text()
    assert html.index("Verdict") < html.index("What changed: base vs tuned")
    assert "REGRESSED" in html and "What regressed (significant): 1" in html
    guard = html[html.index("Guard metrics: items where tuned is worse"):]
    guard = guard[:guard.index("<h2>", 10)]  # this section only
    assert "coconot:1" in guard and "tuned says I cannot help with that (coconot:1)" in guard
    assert "base says read a book (coconot:1)" in guard
    assert "coconot:2" not in guard  # refused by neither
    assert "coconot:3" not in guard  # tuned better there


def test_fail_on_regression_exits_non_zero(monkeypatch, capsys, tmp_path):
    import tunelens.pipeline.runner as runner
    from tunelens.pipeline.summary import build_summary

    planted = build_summary(_planted_run(tmp_path, regress=True))
    monkeypatch.setattr(runner, "run_pipeline", lambda cfg, **kw: planted)
    code, _, err = cli(monkeypatch, capsys, "run", "--tiny", "--quiet", "--fail-on-regression")
    assert code == 1 and "REGRESSED" in err and "over_refusal/over_refusal_rate" in err
    code, _, _ = cli(monkeypatch, capsys, "run", "--tiny", "--quiet")  # without the flag the run only reports it
    assert code == 0
    passed = build_summary(_planted_run(tmp_path / "ok", regress=False))
    monkeypatch.setattr(runner, "run_pipeline", lambda cfg, **kw: passed)
    code, _, _ = cli(monkeypatch, capsys, "run", "--tiny", "--quiet", "--fail-on-regression")
    assert code == 0


def test_unknown_guard_metrics_are_listed():
    from tunelens.errors import ConfigError
    from tunelens.pipeline.config import DEFAULT_GUARDS, load_run_config

    assert load_run_config(None).evaluate.guards == DEFAULT_GUARDS
    with pytest.raises(ConfigError) as exc:
        load_run_config(None, {"evaluate.guards": ["ifeval/prompt_accuracy", "nosuch/rate", "over_refusal/over_refusal_rate"]})
    msg = str(exc.value)
    assert "ifeval/prompt_accuracy" in msg and "prompt_level_loose_acc" in msg and "nosuch/rate" in msg
    assert "'over_refusal/over_refusal_rate'" not in msg  # a valid guard is not listed
    with pytest.raises(ConfigError, match="not in evaluate.suites"):
        load_run_config(None, {"evaluate.suites": ["builtin"], "evaluate.guards": ["harmful/toxic_rate"]})
    # the default guards follow the suites that run
    assert load_run_config(None, {"evaluate.suites": ["builtin", "ifeval"]}).evaluate.guards == ["ifeval/prompt_level_loose_acc"]


def test_quick_preset_is_marked_and_smaller():
    from tunelens.pipeline.config import load_run_config
    from tunelens.pipeline.presets import QUICK

    quick, default = load_run_config(None, QUICK), load_run_config(None)
    assert quick.preset == "quick" and quick.evaluate.suites == default.evaluate.suites
    assert quick.evaluate.guards == default.evaluate.guards
    assert all(quick.evaluate.limits[k] < default.evaluate.limits[k] for k in default.evaluate.limits)
    assert quick.train.max_steps < default.train.max_steps


def test_default_targets_are_checked_against_their_rules(tmp_path):
    """The over-refusal target needs tuned - base <= +0.05 with the CI's upper bound <= +0.10: a rise
    inside the CI that passes the guard can still miss the target; unmeasured targets say so."""
    from tunelens.cards.evaluation import limitation_items, verdict_markdown
    from types import SimpleNamespace
    from tunelens.pipeline.report import write_report
    from tunelens.pipeline.summary import build_summary

    run = _planted_run(tmp_path, regress=False)  # over-refusal +0.03 [-0.05, +0.10]: within the target
    s = build_summary(run)
    by = {t["metric"]: t for t in s["targets"]}
    assert by["over_refusal/over_refusal_rate"]["status"] == "met"
    assert by["ifeval/prompt_level_loose_acc"]["status"] == "met"
    assert by["builtin/pass_rate/test"]["status"] == by["harmful/refusal_rate"]["status"] == "not evaluated"

    results = json.loads((run / "eval" / "results.json").read_text())
    results["comparisons"][1] = _comp("over_refusal", "over_refusal_rate", 0.02, 0.06, [-0.01, 0.13], hib=False)
    (run / "eval" / "results.json").write_text(json.dumps(results))
    s = build_summary(run)
    assert s["status"] == "PASSED"  # not a significant regression ...
    missed = next(t for t in s["targets"] if t["metric"] == "over_refusal/over_refusal_rate")
    assert missed["status"] == "not met" and missed["ci"] == [-0.01, 0.13]  # ... but the target is missed
    (run / "summary.json").write_text(json.dumps(s))
    html = write_report(run).read_text()
    assert "Targets of the default run" in html and "not met" in html
    art = SimpleNamespace(run_dir=run)  # the card reads summary.json from the run directory
    assert any("Over-refusal of benign look-alikes" in line for line in limitation_items(art))
    assert "| Over-refusal of benign look-alikes: at most +5 points |" in verdict_markdown(art)
