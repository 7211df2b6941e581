"""Run config: validation names the bad field, example configs validate, Alpaca under --commercial is rejected."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunelens.cli import app
from tunelens.errors import ConfigError, TunelensError
from tunelens.pipeline.config import load_run_config

CONFIGS = sorted(Path(__file__).resolve().parents[1].joinpath("configs", "run").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_configs_validate(path, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # relative paths in the configs
    cfg = load_run_config(path)
    assert cfg.name


def test_example_configs_cover_the_issue():
    names = {p.name for p in CONFIGS}
    assert {"default.yaml", "qwen2.5-0.5b-lora-gpu.yaml", "llama-3.2-1b-qlora-gpu.yaml", "fsdp-multi-gpu.yaml",
            "alpaca-commercial.yaml"} <= names


def test_default_yaml_is_the_embedded_default():
    written = load_run_config(CONFIGS[0].parent / "default.yaml").model_dump()
    assert written == load_run_config(None).model_dump()


@pytest.mark.parametrize("override, field", [
    ({"train.learnin_rate": 1e-4}, "train.learnin_rate: unknown field"),
    ({"train.learning_rate": -1}, "train.learning_rate"),
    ({"data.curate.dedup.thresold": 0.5}, "data.curate.dedup.thresold: unknown field"),
    ({"evaluate.limt": 3}, "evaluate.limt: unknown field"),
    ({"suite.n": 1}, "suite.n"),
    ({"explain.n_items": 0}, "explain.n_items"),
    ({"name": "no spaces allowed"}, "name"),
    ({"train.model": "x"}, "set by the run itself"),
    ({"launch.accelerate_config": "/nonexistent.yaml"}, "accelerate config file not found"),
])
def test_bad_fields_are_named(override, field):
    with pytest.raises(ConfigError) as err:
        load_run_config(None, override)
    assert field in str(err.value)


def test_yaml_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_run_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_run_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_run_config(tmp_path / "missing.yaml")


def test_overrides_merge_into_the_embedded_default():
    from tunelens.data.config import DedupConfig

    default = load_run_config(None)
    cfg = load_run_config(None, {"train.max_steps": 5, "data.curate.dedup.near": False})
    assert cfg.train.model_dump() == {**default.train.model_dump(), "max_steps": 5}
    assert cfg.data.curate.pii == default.data.curate.pii and cfg.data.curate.dedup == DedupConfig(near=False)


def test_commercial_sets_the_licence_policy():
    cfg = load_run_config(None, {"data.commercial": True})
    assert cfg.data.curate.license_policy.preset == "commercial"  # the CurateConfig the curate stage runs with


def test_cli_reports_config_errors_without_traceback(tmp_path):
    result = CliRunner().invoke(app, ["run", "--tiny", "--run-dir", str(tmp_path / "r"), "--set", "train.max_stepz=3"])
    assert result.exit_code != 0
    assert isinstance(result.exception, TunelensError) and "train.max_stepz" in str(result.exception)
    result = CliRunner().invoke(app, ["run", "--tiny", "--set", "oops"])
    assert "expected KEY=VALUE" in str(result.exception)
    result = CliRunner().invoke(app, ["run", "--tiny", "--run-dir", str(tmp_path / "r"), "--from", "nowhere"])
    assert "--from 'nowhere'" in str(result.exception)


def test_alpaca_under_commercial_is_rejected(shared_data, tmp_path, monkeypatch):
    """The real Alpaca file is CC BY-NC 4.0: the commercial policy rejects every record, with the reason."""
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    cfg = load_run_config(CONFIGS[0].parent / "alpaca-commercial.yaml",
                          {"run_dir": str(tmp_path / "alpaca"), "data.inputs": [str(shared_data / "alpaca_data.json")]})
    from tunelens.pipeline.runner import run_pipeline

    with pytest.raises(TunelensError, match="kept no records out of 52002.*CC-BY-NC-4.0 denied"):
        run_pipeline(cfg, progress=False)
    rejects = (tmp_path / "alpaca" / "curate" / "rejects.jsonl").read_text().splitlines()
    assert len(rejects) == 52002
    assert not (tmp_path / "alpaca" / "stages" / "curate.done").exists()


def test_explain_method_comes_from_the_registry():
    from pydantic import ValidationError

    from tunelens.explain import methods
    from tunelens.pipeline.config import RunConfig

    for name in methods.names():
        assert RunConfig.model_validate({"explain": {"method": name}}).explain.method == name
    assert RunConfig.model_validate({"explain": {"method": "ig"}}).explain.method == "integrated_gradients"
    with pytest.raises(ValidationError, match="unknown attribution method 'nope'.*saliency"):
        RunConfig.model_validate({"explain": {"method": "nope"}})
