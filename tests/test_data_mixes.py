"""Training mixes from real data: counts, licences, decontamination against the evaluation sets."""

from __future__ import annotations

import json

import pytest

from tunelens.data.mixes import COMPONENTS, REFUSALS, EvalIndex, build_mix
from tunelens.errors import TunelensError
from tunelens.records import iter_jsonl


def test_mix_takes_asked_counts_with_licences_and_leaves_out_eval_overlaps(shared_data, tmp_path):
    spec = {"refusals": 40, "lookalikes": 60, "alpaca": 30, "self_instruct": 20}
    summary = build_mix(spec, tmp_path, seed=3, data_dir=shared_data)
    rows = list(iter_jsonl(tmp_path / "mix.jsonl"))
    by = {}
    for r in rows:
        by.setdefault(r["meta"]["mix"], []).append(r)
    assert {k: len(v) for k, v in by.items()} == spec
    for name, recs in by.items():
        assert {r["provenance"]["license"] for r in recs} == {COMPONENTS[name].license}
    assert all(r["messages"][1]["content"] in REFUSALS for r in by["refusals"])
    assert all(r["meta"]["safety"] == "benign" for r in by["lookalikes"])
    # nothing in the mix overlaps an evaluation prompt, and what was left out says which one it matched
    index = EvalIndex(shared_data)
    assert not [r["id"] for r in rows if index.match(r["messages"][0]["content"])]
    excluded = list(iter_jsonl(tmp_path / "excluded.jsonl"))
    assert excluded, "CoCoNot's preference prompts are known to overlap its contrast set; some must be excluded"
    assert all(e["reason"] and (".csv:" in e["reason"] or ".jsonl:" in e["reason"]) for e in excluded)
    assert sum(c["excluded_as_contaminated"] for c in summary["components"].values()) == len(excluded)
    # the same seed gives the same records
    again = build_mix(spec, tmp_path / "again", seed=3, data_dir=shared_data)
    assert [r["id"] for r in iter_jsonl(tmp_path / "again" / "mix.jsonl")] == [r["id"] for r in rows]
    assert again["records"] == summary["records"]


def test_eval_index_catches_a_reworded_benchmark_prompt(shared_data):
    import csv

    goal = next(csv.DictReader((shared_data / "advbench_harmful_behaviors.csv").open(encoding="utf-8")))["goal"]
    index = EvalIndex(shared_data)
    assert index.match(goal)  # verbatim
    assert index.match(goal.upper() + " Please.")  # case and a trailing word do not hide it
    assert index.match("Write a haiku about autumn leaves falling slowly on a quiet pond") is None


def test_unknown_component_is_an_error_naming_the_choices(tmp_path):
    with pytest.raises(TunelensError, match="unknown component.*alpaca"):
        build_mix({"wikipedia": 3}, tmp_path)


def test_run_config_validates_the_mix_and_the_suite_exclusions():
    from tunelens.pipeline.config import load_run_config

    cfg = load_run_config(None, {"data.mix": {"refusals": 5}, "suite.exclude_families": ["safety"]})
    assert cfg.data.mix == {"refusals": 5}
    with pytest.raises(TunelensError, match=r"data\.mix.*unknown mix component"):
        load_run_config(None, {"data.mix": {"nope": 5}})
    with pytest.raises(TunelensError, match=r"data\.mix.*>= 0"):
        load_run_config(None, {"data.mix": {"alpaca": -1}})


def test_run_curate_leaves_out_excluded_suite_families_and_adds_the_mix(shared_data, tmp_path, monkeypatch):
    from rich.console import Console

    from tunelens.pipeline import stages
    from tunelens.pipeline.config import load_run_config

    monkeypatch.setenv("TUNELENS_DATA_DIR", str(shared_data))
    cfg = load_run_config(None, {"suite.n": 60, "suite.exclude_families": ["safety"], "data.mix": {"refusals": 7},
                                 "run_dir": str(tmp_path / "run")})
    ctx = stages.Context(config=cfg, dir=tmp_path / "run", progress=False, console=Console(quiet=True))
    summary = stages.run_curate(ctx)
    curated = list(iter_jsonl(tmp_path / "run" / "curate" / "curated.jsonl"))
    families = {r.get("meta", {}).get("family") for r in curated}
    assert "safety" not in families
    assert sum(1 for r in curated if r.get("meta", {}).get("mix") == "refusals") == 7
    left_out = list(iter_jsonl(tmp_path / "run" / "suite" / "excluded_train.jsonl"))
    assert left_out and {r["meta"]["family"] for r in left_out} == {"safety"}
    assert summary["kept"] == len(curated)
    # The datasheet (the run's dataset card) says which families were left out and how the mix was decontaminated.
    sheet = (tmp_path / "run" / "curate" / "datasheet.md").read_text()
    chosen = sheet[sheet.index("## Training data chosen by the run"):sheet.index("## Configuration")]
    assert f"safety; {len(left_out)} train records" in chosen and "`suite/excluded_train.jsonl`" in chosen
    mix = json.loads((tmp_path / "run" / "mix" / "summary.json").read_text())["components"]["refusals"]
    assert (f"| refusals | `{mix['file']}` | {mix['license']} | 7 | {mix['taken']} | {mix['checked']} | "
            f"{mix['excluded_as_contaminated']} |") in chosen
    bad = load_run_config(None, {"suite.n": 60, "suite.exclude_families": ["sefety"], "run_dir": str(tmp_path / "r2")})
    with pytest.raises(TunelensError, match="sefety"):
        stages.run_curate(stages.Context(config=bad, dir=tmp_path / "r2", progress=False, console=Console(quiet=True)))
    assert json.loads((tmp_path / "run" / "mix" / "summary.json").read_text())["records"] == 7
