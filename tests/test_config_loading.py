"""One loader, one error formatter, each stage config validated once per run.

Counting: every direct build of a pydantic model (``Model(...)`` or ``Model.model_validate``) is
recorded by class. A nested section (``RunConfig.train`` is a TrainSettings, ``RunConfig.data.curate``
a CurateConfig) is validated exactly once per RunConfig build, inside it; so "one RunConfig build
and no direct TrainSettings/CurateConfig build" means each section was validated once.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from tunelens.cli import app
from tunelens.config_files import Append, format_validation_error, load_config
from tunelens.data.config import CurateConfig
from tunelens.errors import ConfigError
from tunelens.evaluate import EvalConfig
from tunelens.pipeline.config import RunConfig, load_run_config
from tunelens.train.config import TrainConfig, TrainSettings

ROOT = Path(__file__).resolve().parents[1]
WATCHED = (RunConfig, TrainSettings, TrainConfig, CurateConfig, EvalConfig)


@pytest.fixture()
def builds(monkeypatch) -> Counter:
    """Counter of direct model builds, by class name (only the stage configs are counted)."""
    counts: Counter = Counter()
    validate, init = BaseModel.model_validate.__func__, BaseModel.__init__

    def counted_validate(cls, *args, **kwargs):
        if cls in WATCHED:
            counts[cls.__name__] += 1
        return validate(cls, *args, **kwargs)

    def counted_init(self, *args, **kwargs):
        if type(self) in WATCHED:
            counts[type(self).__name__] += 1
        init(self, *args, **kwargs)

    monkeypatch.setattr(BaseModel, "model_validate", classmethod(counted_validate))
    monkeypatch.setattr(BaseModel, "__init__", counted_init)
    return counts


@pytest.fixture()
def stubbed_stages(monkeypatch):
    """Curation runs for real (tiny suite); training, evaluation, explain and report are stubbed."""
    import tunelens.evaluate
    import tunelens.train
    from tunelens.pipeline import runner

    trained: list[TrainConfig] = []

    def fake_train(cfg, progress=True):
        trained.append(cfg)
        (cfg.out / "adapter").mkdir(parents=True, exist_ok=True)
        (cfg.out / "adapter" / "adapter_config.json").write_text(json.dumps({"lr": cfg.learning_rate}))
        return SimpleNamespace(interrupted=False, steps=cfg.max_steps, final_loss=1.0, tokens_per_s=1.0, wall_s=0.0,
                               adapter_dir=cfg.out / "adapter", model_dir=None)

    monkeypatch.setattr(tunelens.train, "train", fake_train)
    monkeypatch.setattr(tunelens.evaluate, "evaluate", lambda cfg, progress=True: {"comparisons": []})
    for stage in ("explain", "report"):
        monkeypatch.setitem(runner.STAGE_FUNCS, stage, (runner.STAGE_FUNCS[stage][0], lambda ctx: {"stub": True}))
    return trained


def _run(tmp_path, *args):
    result = CliRunner().invoke(app, ["run", "--tiny", "--quiet", "--run-dir", str(tmp_path / "run"), *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def test_one_run_validates_each_stage_config_once(tmp_path, builds, stubbed_stages):
    result = _run(tmp_path)
    assert result.output.count("skipped") == 0
    # RunConfig once (its train and data.curate sections inside it, once each), then the stages:
    # TrainConfig once for the train stage's hash and run, EvalConfig once for evaluate's.
    assert builds == Counter({"RunConfig": 1, "TrainConfig": 1, "EvalConfig": 1}), builds
    (cfg,) = stubbed_stages
    assert cfg.max_steps == 4 and cfg.model == "tiny-random" and cfg.data == [str(tmp_path / "run" / "curate" / "curated.jsonl")]

    builds.clear()
    result = _run(tmp_path)  # everything skipped: the hashes still build each config once
    assert result.output.count("skipped") == 5
    assert builds == Counter({"RunConfig": 1, "TrainConfig": 1, "EvalConfig": 1}), builds


def test_a_changed_train_setting_reruns_train_and_an_unchanged_one_skips(tmp_path, stubbed_stages):
    _run(tmp_path, "--set", "train.learning_rate=0.001")
    markers = {s: (tmp_path / "run" / "stages" / f"{s}.done").read_text() for s in ("curate", "train")}
    _run(tmp_path, "--set", "train.learning_rate=0.001")
    assert len(stubbed_stages) == 1  # same settings: training skipped
    _run(tmp_path, "--set", "train.learning_rate=0.002")
    assert [c.learning_rate for c in stubbed_stages] == [0.001, 0.002]
    assert (tmp_path / "run" / "stages" / "curate.done").read_text() == markers["curate"]
    assert (tmp_path / "run" / "stages" / "train.done").read_text() != markers["train"]


def test_the_run_config_yaml_reads_back_as_the_same_config(tmp_path, stubbed_stages):
    _run(tmp_path, "--commercial", "--set", "data.license=MIT")
    written = tmp_path / "run" / "config.yaml"
    again = load_run_config(written)
    assert again.model_dump() == load_run_config(None, {**_tiny(), "run_dir": str(tmp_path / "run"),
                                                        "data.commercial": True, "data.license": "MIT"}).model_dump()
    assert again.data.curate.license == "MIT" and again.data.curate.license_policy.preset == "commercial"


def _tiny():
    from tunelens.pipeline.presets import TINY

    return {**TINY, "name": "tiny"}


def test_accelerate_child_reads_the_request_with_one_validation(tmp_path, builds, monkeypatch):
    """Under `accelerate launch` the run writes the validated TrainConfig and the child process
    (`tunelens train -c request`) parses it once: a new process must validate its input once."""
    import subprocess

    from rich.console import Console

    from tunelens.pipeline import stages
    from tunelens.pipeline.config import train_config

    run = load_run_config(None, {**_tiny(), "launch.accelerate_config": str(ROOT / "configs" / "accelerate" / "1gpu.yaml")})
    ctx = stages.Context(config=run, dir=tmp_path, progress=False, console=Console())
    cfg = train_config(run, [str(tmp_path / "curated.jsonl")], tmp_path / "train")
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    stages._train_with_accelerate(ctx, cfg)
    (cmd,) = calls
    request = Path(cmd[cmd.index("-c") + 1])
    assert cmd[-3:] == ["train", "-c", str(request)]

    seen = []
    import tunelens.train.run

    monkeypatch.setattr(tunelens.train.run, "train", lambda c, progress=True: seen.append(c) or SimpleNamespace(
        interrupted=False, method="sft", steps=1, final_loss=1.0, tokens_per_s=1.0, adapter_dir=c.out, merged_dir=None,
        model_dir=None))
    builds.clear()
    result = CliRunner().invoke(app, ["train", "-c", str(request), "-q"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert builds == Counter({"TrainConfig": 1})
    assert seen == [cfg]


def test_train_and_curate_commands_validate_once(tmp_path, builds, monkeypatch):
    import sys

    import tunelens.train.run

    monkeypatch.setattr(tunelens.train.run, "train", lambda c, progress=True: SimpleNamespace(
        interrupted=False, method="sft", steps=1, final_loss=1.0, tokens_per_s=1.0, adapter_dir=c.out, merged_dir=None,
        model_dir=None))
    (tmp_path / "t.yaml").write_text("max_steps: 3\nlora: {r: 4}\n")
    result = CliRunner().invoke(app, ["train", "-c", str(tmp_path / "t.yaml"), "-m", "tiny-random", "-d", "x.jsonl",
                                      "-o", str(tmp_path / "o"), "--lora-alpha", "8", "-q"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert builds == Counter({"TrainConfig": 1})

    got = []
    report = SimpleNamespace(kept=1, records_in=1, rejected=0, changed=0, seconds=0.0, files={}, steps=[], inputs=[])
    monkeypatch.setattr(sys.modules["tunelens.data.curate"], "curate",
                        lambda inputs, out, config, progress=True: got.append(config) or report)
    (tmp_path / "c.yaml").write_text("license: MIT\nlicense_policy: {deny: [GPL-*]}\ndecontaminate: {files: [a.jsonl]}\n")
    builds.clear()
    result = CliRunner().invoke(app, ["data", "curate", "in.jsonl", "-o", str(tmp_path / "out"),
                                      "-c", str(tmp_path / "c.yaml"), "--commercial", "--deny-license", "AGPL-*",
                                      "--decontaminate", "b.jsonl::q", "--no-pii", "-q"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert builds == Counter({"CurateConfig": 1})
    (cfg,) = got
    assert cfg.license == "MIT" and cfg.license_policy.preset == "commercial" and not cfg.pii.enabled
    assert cfg.license_policy.deny == ["GPL-*", "AGPL-*"]  # the options add to the file's lists
    assert [(str(f.path), f.fields) for f in cfg.decontaminate.files] == [("a.jsonl", None), ("b.jsonl", ["q"])]


def test_the_commercial_preset_means_the_same_in_run_and_curate(tmp_path):
    from tunelens.data.config import load

    run = load_run_config(None, {"data.commercial": True})
    assert run.data.curate.license_policy == load(None, {"license_policy.preset": "commercial"}).license_policy
    assert run.data.curate.pii == load_run_config(None).data.curate.pii  # the rest of the default curation stays


def test_default_yaml_drift_is_caught(monkeypatch):
    """configs/run/default.yaml is checked against the embedded default: a changed default fails."""
    from tunelens.pipeline import config

    path = ROOT / "configs" / "run" / "default.yaml"
    assert load_run_config(path).model_dump() == load_run_config(None).model_dump()
    monkeypatch.setitem(config.DEFAULT_TRAIN, "max_steps", 99)
    assert load_run_config(path).model_dump() != load_run_config(None).model_dump()


def test_one_formatter_names_where_and_the_field():
    with pytest.raises(ConfigError) as err:
        load_run_config(None, {"train.max_steps": 0, "evaluate.limt": 3})
    text = str(err.value)
    assert text.startswith("invalid run config:\n")
    assert "  options: train.max_steps: must be at least 1 optimizer step" in text
    assert "  options: evaluate.limt: unknown field (misspelled?)" in text
    from pydantic import ValidationError

    try:
        TrainSettings.model_validate({"lora": {"rank": 1}})
    except ValidationError as exc:
        assert format_validation_error(exc, "run config", "x.yaml", prefix="train.") == (
            "invalid run config:\n  x.yaml: train.lora.rank: unknown field (misspelled?)")


def test_the_loader_serves_a_flat_config_like_serve(tmp_path):
    """The serve config's loader (path, **overrides; None = not given) is this loader with what='serve config'."""
    from tunelens.serve.config import ServeConfig

    (tmp_path / "s.yaml").write_text("models: [{name: a, path: tiny-random}]\nport: 1\n")
    cfg = load_config(ServeConfig, tmp_path / "s.yaml", {"port": 9000, "host": None}, what="serve config")
    assert cfg.port == 9000 and cfg.host == ServeConfig.model_fields["host"].default
    (tmp_path / "s.yaml").write_text("models: [{name: a, path: x}]\nguardrails: {injection: {treshold: 0.3}}\n")
    with pytest.raises(ConfigError, match=r"invalid serve config:\n  .*s.yaml: guardrails\.injection\.treshold: unknown"):
        load_config(ServeConfig, tmp_path / "s.yaml", what="serve config")


def test_append_and_mapping_errors(tmp_path):
    (tmp_path / "c.yaml").write_text("dedup: 3\n")
    with pytest.raises(ConfigError, match="c.yaml: field 'dedup' must be a mapping to set dedup.near"):
        load_config(CurateConfig, tmp_path / "c.yaml", {"dedup.near": False})
    (tmp_path / "c.yaml").write_text("license_policy: {deny: GPL}\n")
    with pytest.raises(ConfigError, match="must be a list"):
        load_config(CurateConfig, tmp_path / "c.yaml", {"license_policy.deny": Append(["MIT"])})
