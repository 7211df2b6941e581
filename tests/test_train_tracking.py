"""Experiment tracking: report_to reaches transformers, and each tracker holds the loss the run logged.

Everything runs offline: TensorBoard event files, an MLflow file store, W&B in offline mode.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tunelens.errors import ConfigError
from tunelens.records import make_conversation, write_jsonl
from tunelens.train import TrainConfig, train

from _cli import cli
from _numerics import assert_close_relative

QA = [("What is the capital of France?", "Paris."), ("What colour is the sky?", "Blue."),
      ("Name a prime number.", "Seven."), ("What is 2 + 2?", "4.")]


def _sft_data(path: Path) -> Path:
    write_jsonl(path, [make_conversation([{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                                         source="test", source_file="inline", row=i, license="MIT")
                       for i, (q, a) in enumerate(QA * 2)])
    return path


def _logged_losses(out: Path) -> list[float]:
    return [json.loads(ln)["loss"] for ln in (out / "metrics.jsonl").read_text().splitlines() if ln.strip()]


def _tensorboard_losses(out: Path) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    event_files = sorted((out / "checkpoints" / "runs").rglob("events.out.tfevents.*"))
    assert event_files, f"no TensorBoard event file under {out / 'checkpoints' / 'runs'}"
    acc = EventAccumulator(str(event_files[0].parent))
    acc.Reload()
    assert "train/loss" in acc.Tags()["scalars"], acc.Tags()["scalars"]
    return [e.value for e in sorted(acc.Scalars("train/loss"), key=lambda e: e.step)]


def test_config_and_cli_accept_report_to():
    assert TrainConfig(report_to="tensorboard, mlflow").report_to == ["tensorboard", "mlflow"]
    assert TrainConfig(report_to="none").report_to == [] and TrainConfig().report_to == []
    from tunelens.pipeline.config import load_run_config

    run = load_run_config(None, {"train.report_to": ["tensorboard"]})
    assert run.train.report_to == ["tensorboard"]
    from tunelens.train.config import load_config

    with pytest.raises(ConfigError, match="report_to.0"):
        load_config(None, {"report_to": ["comet"]})


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None or importlib.util.find_spec("mlflow") is None,
                    reason="needs the tensorboard and mlflow packages (the `test` extra installs them)")
def test_sft_logs_the_loss_to_tensorboard_and_mlflow(tmp_path, monkeypatch, capsys, tiny_model_path):
    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "tunelens-test")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    out = tmp_path / "out"
    code, _, err = cli(monkeypatch, capsys, "train", "-m", str(tiny_model_path), "-d", str(_sft_data(tmp_path / "d.jsonl")),
                       "-o", str(out), "--max-steps", "3", "--batch-size", "2", "--max-length", "48", "--quiet",
                       "--report-to", "tensorboard", "--report-to", "mlflow")
    assert code == 0, err
    logged = _logged_losses(out)
    assert len(logged) == 3

    assert_close_relative(_tensorboard_losses(out), logged, rel=1e-5)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store.as_uri())
    experiment = client.get_experiment_by_name("tunelens-test")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.run_name == "out"
    history = sorted(client.get_metric_history(runs[0].info.run_id, "loss"), key=lambda m: m.step)
    assert [m.step for m in history] == [1, 2, 3]
    assert_close_relative([m.value for m in history], logged, rel=1e-5)
    assert runs[0].data.params.get("learning_rate") is not None  # the run's settings travel too


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="needs the tensorboard package")
def test_dpo_logs_to_tensorboard(tmp_path, monkeypatch, tiny_model_path):
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    from tunelens.records import make_preference

    prefs = [make_preference([{"role": "user", "content": q}], a, "I don't know.", source="t", source_file="inline",
                             row=i, license="MIT") for i, (q, a) in enumerate(QA * 2)]
    write_jsonl(tmp_path / "p.jsonl", prefs)
    cfg = TrainConfig(method="dpo", model=str(tiny_model_path), data=[str(tmp_path / "p.jsonl")],
                      output_dir=str(tmp_path / "out"), max_steps=2, batch_size=2, max_length=48,
                      report_to=["tensorboard"])
    train(cfg, progress=False)
    assert_close_relative(_tensorboard_losses(cfg.out), _logged_losses(cfg.out), rel=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="needs the tensorboard package")
def test_grpo_logs_to_tensorboard(tmp_path, monkeypatch):
    import sys

    from _grpo import build

    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    toy = build(tmp_path / "toy")
    monkeypatch.syspath_prepend(str(toy["rewards_dir"]))
    cfg = TrainConfig(method="grpo", model=str(toy["model"]), data=[str(toy["prompts"])], output_dir=str(tmp_path / "out"),
                      max_length=64, max_steps=2, batch_size=8, seed=0, report_to=["tensorboard"],
                      grpo={"num_generations": 4, "max_completion_length": 8,
                            "rewards": [{"name": "format", "options": {"pattern": r"\bapple\b"}}]})
    try:
        train(cfg, progress=False)
    finally:
        sys.modules.pop("grpo_rewards", None)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    event_files = sorted((cfg.out / "checkpoints" / "runs").rglob("events.out.tfevents.*"))
    assert event_files
    acc = EventAccumulator(str(event_files[0].parent))
    acc.Reload()
    logged = [json.loads(ln) for ln in (cfg.out / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    rewards = [e.value for e in sorted(acc.Scalars("train/reward"), key=lambda e: e.step)]
    assert len(rewards) == len(logged) == 2
    assert_close_relative(rewards, [r["reward"] for r in logged], rel=1e-5, scale=1.0)


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None,
                    reason="the wandb package is not installed (pip install wandb); W&B is tested offline when it is")
def test_wandb_offline_run_holds_the_loss(tmp_path, monkeypatch, tiny_model_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wandb").mkdir()
    import wandb

    seen = {}
    real_finish = wandb.finish

    def finish(*args, **kwargs):  # the run's summary as W&B holds it when tunelens closes the run
        seen["summary"] = dict(wandb.run.summary)
        seen["mode"] = wandb.run.settings.mode
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(wandb, "finish", finish)
    cfg = TrainConfig(model=str(tiny_model_path), data=[str(_sft_data(tmp_path / "d.jsonl"))],
                      output_dir=str(tmp_path / "out"), max_steps=2, batch_size=2, max_length=48, report_to=["wandb"])
    train(cfg, progress=False)
    assert seen, "tunelens did not finish the W&B run"
    assert seen["mode"] == "offline"
    assert_close_relative(seen["summary"]["train/loss"], _logged_losses(cfg.out)[-1], rel=1e-5)
    assert wandb.run is None  # closed: a later run in this process starts its own
    assert list((tmp_path / "wandb").rglob("run-*.wandb"))  # the offline run file, for `wandb sync`


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="needs the mlflow package")
def test_a_tracker_failing_is_a_clear_error(tmp_path, monkeypatch, capsys, tiny_model_path):
    # MLflow 3 refuses a plain file store unless MLFLOW_ALLOW_FILE_STORE is set: a first-time user's setup.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    code, _, err = cli(monkeypatch, capsys, "train", "-m", str(tiny_model_path), "-d", str(_sft_data(tmp_path / "d.jsonl")),
                       "-o", str(tmp_path / "out"), "--max-steps", "1", "--batch-size", "2", "--max-length", "48",
                       "--quiet", "--report-to", "mlflow")
    assert code != 0
    assert "report_to: the mlflow tracker failed" in err and "MLFLOW_ALLOW_FILE_STORE" in err


def test_missing_tracker_package_is_a_clear_error(tmp_path, monkeypatch, capsys, tiny_model_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    code, _, err = cli(monkeypatch, capsys, "train", "-m", str(tiny_model_path), "-d", str(_sft_data(tmp_path / "d.jsonl")),
                       "-o", str(tmp_path / "out"), "--max-steps", "1", "--report-to", "mlflow")
    assert code != 0
    assert "report_to: mlflow needs the package 'mlflow'" in err and "pip install mlflow-skinny" in err
    assert not (tmp_path / "out" / "manifest.json").exists()  # refused before any training
