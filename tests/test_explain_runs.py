"""The method registry is the only list; the CLI and the pipeline stage share one API and one faithfulness.json."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from tunelens.cli import app
from tunelens.errors import TunelensError
from tunelens.explain import METHODS, attribute, methods

EXPLAIN_SRC = Path(__file__).resolve().parents[1] / "src" / "tunelens" / "explain"

# Tiny models: one torch thread is faster and does not spin on a busy 2-core machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_registry_is_the_list():
    assert METHODS == methods.names() and {"input_x_gradient", "integrated_gradients", "occlusion",
                                           "attention_rollout"} <= set(METHODS)
    assert methods.DEFAULT in METHODS
    for alias, name in methods.aliases().items():
        assert methods.resolve(alias) == name and alias not in METHODS
    assert set(methods.choices()) == set(METHODS) | set(methods.aliases())
    with pytest.raises(TunelensError, match=r"unknown attribution method 'shap': choose one of .*input_x_gradient"):
        methods.resolve("shap")
    # Every method module in the package registered itself (file name = method name).
    modules = {p.stem for p in (EXPLAIN_SRC / "methods").glob("*.py") if not p.stem.startswith("_")}
    assert modules == set(METHODS)
    assert methods.accepting("granularity") == ("occlusion",)
    described = {d["name"]: d for d in methods.describe()}
    assert described["integrated_gradients"]["options"]["steps"]["default"] == 16


def test_help_lists_every_registered_method():
    for command in ("explain", "explain-focus"):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "400"})
        assert result.exit_code == 0, result.output
        for name in METHODS:
            assert name in result.output, (command, name)
        for alias in methods.aliases():
            assert f"({alias})" in result.output, (command, alias)


def test_unknown_option_names_the_method_and_the_option(trigger_model):
    model, tok = trigger_model
    with pytest.raises(TunelensError, match=r"attribution method 'attention_rollout' does not take 'steps'; it accepts no options"):
        attribute(model, tok, [{"role": "user", "content": "river apple"}], "red", "rollout", steps=3)
    with pytest.raises(TunelensError, match=r"'input_x_gradient' does not take 'baseline'; it accepts reduce, target, target_chunk"):
        attribute(model, tok, [{"role": "user", "content": "river apple"}], "red", "ixg", baseline="zero")


def _imports(path: Path, package: str) -> set[str]:
    """tunelens.explain modules imported anywhere in ``path`` (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # `from tunelens.explain import methods` imports the module tunelens.explain.methods
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if m.startswith(package)}


def test_explain_has_no_import_circles():
    package = "tunelens.explain"
    modules: dict[str, Path] = {}
    for path in EXPLAIN_SRC.rglob("*.py"):
        parts = path.relative_to(EXPLAIN_SRC).with_suffix("").parts
        name = ".".join((package, *parts)).removesuffix(".__init__")
        modules[name] = path
    graph = {name: {m for m in _imports(path, package) if m in modules and m != name} for name, path in modules.items()}

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return trail + [start]
                if nxt not in trail:
                    stack.append((nxt, trail + [nxt]))
        return None

    circles = [c for c in (cycle_from(m) for m in sorted(graph)) if c]
    assert not circles, circles
    assert "tunelens.explain.cli" not in {m for deps in graph.values() for m in deps}, "nothing imports the CLI"


def _stage_context(run_dir: Path):
    from tunelens.pipeline.config import load_run_config
    from tunelens.pipeline.presets import TINY
    from tunelens.pipeline.stages import Context

    return Context(config=load_run_config(None, dict(TINY)), dir=run_dir, progress=False, console=Console(quiet=True))


def test_cli_and_pipeline_stage_write_one_faithfulness_shape(tmp_path, tiny_model_path, monkeypatch):
    import tunelens.explain.runs as runs
    from tunelens.pipeline.explain_stage import explain_run

    # The pipeline's explain stage (tiny preset; the tiny model stands in for the tuned one). The
    # random tiny model's greedy responses are empty, and empty responses are skipped: give both
    # models a response to explain.
    monkeypatch.setattr(runs, "greedy_responses", lambda lm, prompts, *a, **k: ["The answer is here."] * len(prompts))
    ctx = _stage_context(tmp_path / "run")
    summary = explain_run(ctx, tiny_model_path)
    explain = json.loads((tmp_path / "run" / "explain" / "explain.json").read_text())
    assert summary["n_items"] == explain["n_items"] == 1
    # Focus and faithfulness on the focus items, per model, on the whole response's attribution.
    focus = json.loads((tmp_path / "run" / "explain" / "instruction_focus.json").read_text())
    faith = explain["explanation_faithfulness"]
    assert faith["attributed"] == explain["instruction_focus"]["attributed"] == "the whole response's log-probability"
    for label in ("base", "tuned"):
        staged = json.loads((tmp_path / "run" / "explain" / f"faithfulness_{label}.json").read_text())
        assert [it["id"] for it in staged["items"]] == [r["id"] for r in focus[label]["items"]]
        assert staged["params"] == {"ks": ctx.config.explain.faithfulness_ks, "n_random": ctx.config.explain.faithfulness_random,
                                    "seed": ctx.config.seed}
        assert focus[label]["params"] == {"target": "response"}
        wins = faith["attributions better than random (both gains > 0)"][label]
        assert wins["n"] == staged["n_items"] and round(wins["value"] * wins["n"]) == staged["n_better_than_random"]
        gains = [it["comprehensiveness_gain"] for it in staged["items"]]
        # Its mean is the summary's (float64 means of the same numbers; JSON keeps 17 digits).
        assert abs(faith["comprehensiveness gain over random tokens"][label]["value"] - sum(gains) / len(gains)) <= \
            1e-9 * max(1.0, max(abs(g) for g in gains))
        assert explain["faithfulness"][f"comprehensiveness gain over random tokens ({label})"] == \
            faith["comprehensiveness gain over random tokens"][label]
    diffs = [t["comprehensiveness_gain"] - b["comprehensiveness_gain"]
             for b, t in zip(focus["base"]["items"], focus["tuned"]["items"])]
    paired = faith["comprehensiveness gain over random tokens"]["tuned - base"]
    assert paired["n"] == len(diffs) and abs(paired["value"] - sum(diffs) / len(diffs)) <= 1e-9 * max(1.0, *map(abs, diffs))

    # `tunelens explain` on the same kind of model.
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["explain", "-m", str(tiny_model_path), "-p", "Say hi.", "--response", "hi there",
                                      "--n-random", "2", "-o", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    direct = json.loads((out / "faithfulness.json").read_text())
    assert direct["params"] == {"ks": [0.05, 0.1, 0.2, 0.5], "n_random": 2, "seed": 0}

    for doc in (staged, direct):
        assert doc["schema"] == "tunelens.faithfulness/v2" and doc["method"] == "input_x_gradient"
        assert doc["n_better_than_random"] + len(doc["not_better_than_random"]) == doc["n_items"] == len(doc["items"])
        assert {"id", "per_k", "better_than_random", "verdict", "comprehensiveness_gain"} <= set(doc["items"][0])
    assert set(staged) == set(direct) and set(staged["items"][0]) == set(direct["items"][0])


def test_the_focus_measure_compares_every_pair_it_is_given(tiny_model_path):
    # Three models (base, sft, tuned) on the same items: each gets its focus and faithfulness, each
    # pair its paired difference. sft and tuned are the same weights here, so "tuned - sft" is 0.
    from types import SimpleNamespace

    from rich.console import Console

    from tunelens.models import load_model
    from tunelens.pipeline.config import load_run_config
    from tunelens.pipeline.explain_stage import _focus

    lm = load_model(str(tiny_model_path))
    other = load_model(str(tiny_model_path))
    config = load_run_config(None, {"explain.faithfulness_random": 2})
    ctx = SimpleNamespace(config=config, console=Console(quiet=True), progress=False)
    from tunelens.suite import eval_items

    items = [{**r, "messages": [m for m in r["messages"] if m["role"] != "assistant"]}
             for r in eval_items(60, 0) if r["meta"].get("context_span") is not None][:3]
    responses = {"base": ["apple apple", "river river", "stone"], "sft": ["apple", "river", "stone stone"],
                 "tuned": ["apple", "river", "stone stone"]}
    out = _focus(ctx, {"base": lm, "sft": other, "tuned": other}, items, responses,
                 [("base", "sft"), ("base", "tuned"), ("sft", "tuned")])
    focus = out["focus"]
    assert {"base", "sft", "tuned", "sft - base", "tuned - base", "tuned - sft"} <= set(focus)
    assert focus["tuned - sft"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert focus["tuned"]["value"] == pytest.approx(focus["sft"]["value"], abs=1e-6)
    assert focus["tuned - base"]["value"] == pytest.approx(focus["tuned"]["value"] - focus["base"]["value"], abs=1e-6)
    assert "reading (what RL changed, tuned - sft)" in focus
    faith = out["faithfulness"]["comprehensiveness gain over random tokens"]
    assert faith["tuned - sft"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert "reading (tuned - sft)" in out["faithfulness"]
