"""Model card from a synthetic run dir: numbers come from the artifacts, NIST mapping names what exists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tunelens.cards import load_run, regenerate
from tunelens.errors import TunelensError
from tunelens.records import make_conversation, write_jsonl


def _entry(v, lo, hi, n):
    return {"value": v, "ci": [lo, hi], "n": n}


RESULTS = {
    "schema": "tunelens.eval/v1",
    "results": {
        "base": {"builtin": {"pass_rate/test": _entry(0.213, 0.15, 0.28, 150),
                             "refusal_rate_harmful": _entry(0.1, 0.0, 0.25, 20),
                             "over_refusal_rate_benign": _entry(0.05, 0.0, 0.15, 20)}},
        "tuned": {"builtin": {"pass_rate/test": _entry(0.6471, 0.57, 0.72, 150),
                              "refusal_rate_harmful": _entry(0.85, 0.7, 1.0, 20),
                              "over_refusal_rate_benign": _entry(0.1, 0.0, 0.25, 20)}},
    },
    "comparisons": [
        {"suite": "builtin", "metric": "pass_rate/test", "a": "base", "b": "tuned", "delta": 0.4341,
         "ci": [0.35, 0.52], "significant": True, "higher_is_better": True},
        {"suite": "builtin", "metric": "over_refusal_rate_benign", "a": "base", "b": "tuned", "delta": 0.05,
         "ci": [-0.05, 0.15], "significant": False, "higher_is_better": False},
    ],
}


@pytest.fixture()
def run_dir(tmp_path) -> Path:
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    (run / "eval" / "results.json").write_text(json.dumps(RESULTS))
    (run / "train").mkdir()
    (run / "train" / "manifest.json").write_text(json.dumps(
        {"model": {"spec": "smollm2-135m", "id": "HuggingFaceTB/SmolLM2-135M-Instruct", "revision": None,
                   "fingerprint": "abc123"}, "precision": {"name": "fp32"}}))
    (run / "train" / "config.yaml").write_text(yaml.safe_dump(
        {"method": "sft", "peft": "lora", "lora": {"r": 16, "alpha": 32, "dropout": 0.05}, "learning_rate": 3e-4,
         "max_steps": 150, "batch_size": 8, "grad_accum": 1, "seed": 0}))
    (run / "train" / "train_summary.json").write_text(json.dumps({"steps": 150, "final_loss": 0.4321}))
    recs = [make_conversation([{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}],
                              source="suite" if i < 3 else "mine", source_file=None, row=i,
                              license="Apache-2.0" if i < 3 else "MIT") for i in range(4)]
    write_jsonl(run / "curate" / "curated.jsonl", recs)
    write_jsonl(run / "curate" / "rejects.jsonl", [{"step": "dedup_near", "reason": "near duplicate of x"}])
    (run / "curate" / "datasheet.md").write_text("---\nlicense: other\n---\n# datasheet\n")
    return run


def test_card_numbers_and_sections(run_dir):
    from huggingface_hub import ModelCard

    written = regenerate(run_dir)
    assert written == {"model_card": "cards/model_card.md", "dataset_card": "cards/dataset_card.md"}
    card = ModelCard.load(run_dir / "cards" / "model_card.md")
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    values = {e.metric_type: (e.metric_value, e.metric_args) for e in card.data.eval_results}
    assert values["pass_rate/test"] == (0.6471, {"n": 150, "ci_low": 0.57, "ci_high": 0.72})
    assert values["refusal_rate_harmful"][0] == 0.85
    text = card.text
    assert "| builtin | pass_rate/test | 0.213 [0.150, 0.280] (n=150) | 0.647 [0.570, 0.720] (n=150) | " \
           "0.434 [0.350, 0.520], significant: yes |" in text
    # licence mix and rejects from the artifacts
    assert "| Apache-2.0 | 3 | 75.0% |" in text and "| MIT | 1 | 25.0% |" in text
    assert "| dedup_near | 1 |" in text
    assert card.data.license == "other" and card.data.license_name == "mixed-apache-2.0-mit"  # a Hub licence id
    # the non-significant comparison is called out
    assert "builtin/over_refusal_rate_benign" in text.split("## Limitations")[1]
    # safety section only carries safety metrics
    safety = text.split("## Safety results")[1].split("## Explainability")[0]
    assert "refusal_rate_harmful" in safety and "pass_rate/test" not in safety
    assert "learning rate | 0.0003 |" in text


def test_nist_mapping_names_only_existing_artifacts(run_dir):
    regenerate(run_dir)
    text = (run_dir / "cards" / "model_card.md").read_text()
    nist = text.split("## NIST AI RMF mapping")[1]
    assert "`eval/results.json`" in nist and "`curate/rejects.jsonl`" in nist
    assert "`explain/explain.json`" not in nist  # this run has no explain stage
    assert "No explainability stage" in text


def test_missing_results_is_a_clear_error(tmp_path, run_dir):
    with pytest.raises(TunelensError, match="not found"):
        load_run(tmp_path / "nope")
    (run_dir / "eval" / "results.json").unlink()
    with pytest.raises(TunelensError, match="eval/results.json"):
        load_run(run_dir)


def test_corrupt_artifact_is_named(run_dir):
    (run_dir / "train" / "manifest.json").write_text("{not json")
    with pytest.raises(TunelensError, match="manifest.json: invalid JSON"):
        load_run(run_dir)


def test_the_card_reads_the_tuned_minus_base_comparison_among_several_pairs():
    # With the rl stage, results.json holds sft - base before tuned - base: the card's delta column
    # must read the pair of its two columns.
    from tunelens.cards.model_card import comparison, model_labels

    results = {"results": {"base": {}, "sft": {}, "tuned": {}}, "comparisons": [
        {"suite": "s", "metric": "m", "a": "base", "b": "sft", "delta": 0.3},
        {"suite": "s", "metric": "m", "a": "base", "b": "tuned", "delta": 0.1},
        {"suite": "s", "metric": "m", "a": "sft", "b": "tuned", "delta": -0.2}]}
    ref, tuned = model_labels(results)
    assert (ref, tuned) == ("base", "tuned")
    assert comparison(results, "s", "m", ref, tuned)["delta"] == 0.1
    assert comparison(results, "s", "m", "sft", "tuned")["delta"] == -0.2
    assert comparison(results, "s", "m", "tuned", "base") is None


def test_an_unreadable_rl_record_is_said_in_the_card_not_dropped(tmp_path):
    from types import SimpleNamespace

    from tunelens.cards.model_card import _rl_section

    (tmp_path / "rl").mkdir()
    (tmp_path / "rl" / "train_summary.json").write_text('{"steps": 2}')
    (tmp_path / "rl" / "manifest.json").write_text("{not json")
    text = _rl_section(SimpleNamespace(run_dir=tmp_path))
    assert "could not be read (JSONDecodeError" in text and "--from rl" in text
    assert _rl_section(SimpleNamespace(run_dir=tmp_path / "none")) == ""
