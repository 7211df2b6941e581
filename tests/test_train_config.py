"""Config validation and bad input: one clear message from the CLI, never a traceback."""

from __future__ import annotations

import sys

import pytest

from tunelens.errors import ConfigError
from tunelens.records import make_conversation, write_jsonl
from tunelens.train.config import TrainConfig, load_config


def conversations(path, messages_list):
    write_jsonl(path, [make_conversation(m, source="t", source_file="inline", row=i, license="MIT")
                       for i, m in enumerate(messages_list)])
    return path


@pytest.fixture()
def sft_data(tmp_path):
    return conversations(tmp_path / "d.jsonl", [[{"role": "user", "content": "What is two plus two?"},
                                                 {"role": "assistant", "content": "Four."}]] * 4)


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    from tunelens.cli import main

    monkeypatch.setattr(sys, "argv", ["tunelens", "train", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return exc.value.code, " ".join(err.split())  # rich wraps long lines


def test_yaml_config_with_cli_overrides(tmp_path):
    cfg_file = tmp_path / "t.yaml"
    cfg_file.write_text("method: sft\nmodel: tiny-random\nlearning_rate: 1.0e-4\nlora:\n  r: 4\n  alpha: 8\n")
    cfg = load_config(cfg_file, {"lora.r": 8, "max_steps": 5, "batch_size": None})
    assert (cfg.lora.r, cfg.lora.alpha, cfg.max_steps, cfg.learning_rate, cfg.batch_size) == (8, 8, 5, 1e-4, 8)
    assert cfg.lora.target_modules == "all-linear" and cfg.peft == "lora"


@pytest.mark.parametrize("yaml_text, expected", [
    ("learning_rat: 0.1\n", "learning_rat: unknown field"),
    ("lora:\n  rank: 8\n", "lora.rank: unknown field"),
    ("length_policy: cut\n", "length_policy"),
    ("batch_size: 0\n", "batch_size"),
    ("- a list\n", "expected a mapping"),
    ("peft: none\nmerge: true\n", "merge applies to adapters"),
])
def test_bad_config_names_the_field(tmp_path, yaml_text, expected):
    cfg_file = tmp_path / "bad.yaml"
    cfg_file.write_text(yaml_text)
    with pytest.raises(ConfigError, match=expected):
        load_config(cfg_file)


def test_shipped_example_configs_are_valid():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[1] / "configs" / "train").glob("*.yaml"))
    assert len(configs) >= 3
    for path in configs:
        assert isinstance(load_config(path), TrainConfig)


def test_cli_misspelled_config_field(monkeypatch, capsys, tmp_path, sft_data):
    cfg_file = tmp_path / "bad.yaml"
    cfg_file.write_text("epocs: 2\n")
    code, err = run_cli(monkeypatch, capsys, "--config", str(cfg_file), "--data", str(sft_data), "-o", str(tmp_path / "o"))
    assert code == 2 and "epocs: unknown field" in err


def test_cli_model_path_that_does_not_exist(monkeypatch, capsys, tmp_path, sft_data):
    code, err = run_cli(monkeypatch, capsys, "--model", str(tmp_path / "no" / "such-model"), "--data", str(sft_data),
                        "-o", str(tmp_path / "o"))
    assert code == 2 and "model path does not exist" in err


def test_cli_dataset_without_assistant_turns(monkeypatch, capsys, tmp_path, tiny_model_path):
    data = conversations(tmp_path / "q.jsonl", [[{"role": "user", "content": "only questions here"}]] * 3)
    code, err = run_cli(monkeypatch, capsys, "--model", str(tiny_model_path), "--data", str(data), "-o", str(tmp_path / "o"))
    assert code == 2 and "no assistant turns" in err


def test_cli_max_length_smaller_than_every_prompt(monkeypatch, capsys, tmp_path, tiny_model_path, sft_data):
    code, err = run_cli(monkeypatch, capsys, "--model", str(tiny_model_path), "--data", str(sft_data),
                        "-o", str(tmp_path / "o"), "--max-length", "16")
    assert code == 2 and "max_length 16 is smaller than every prompt" in err


def test_cli_out_of_memory_estimate(monkeypatch, capsys, tmp_path, tiny_model_path, sft_data):
    code, err = run_cli(monkeypatch, capsys, "--model", str(tiny_model_path), "--data", str(sft_data),
                        "-o", str(tmp_path / "o"), "--batch-size", "200000", "--max-length", "2048")
    assert code == 2 and "out-of-memory risk" in err and "GiB" in err


def test_cli_qlora_without_cuda(monkeypatch, capsys, tmp_path, tiny_model_path, sft_data):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, err = run_cli(monkeypatch, capsys, "--model", str(tiny_model_path), "--data", str(sft_data),
                        "-o", str(tmp_path / "o"), "--qlora")
    assert code == 2 and "qlora needs a CUDA device" in err


def test_cli_missing_data_file(monkeypatch, capsys, tmp_path, tiny_model_path):
    code, err = run_cli(monkeypatch, capsys, "--model", str(tiny_model_path), "--data", str(tmp_path / "nope.jsonl"),
                        "-o", str(tmp_path / "o"))
    assert code == 2 and "data file not found" in err


def test_cli_bad_record_line(monkeypatch, capsys, tmp_path, tiny_model_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"kind": "conversation", "id": "x", "messages": [{"role": "robot", "content": "hi"}], '
                    '"provenance": {"source": "t"}}\n')
    code, err = run_cli(monkeypatch, capsys, "--model", str(tiny_model_path), "--data", str(data), "-o", str(tmp_path / "o"))
    assert code == 2 and "record 1 is not a valid record" in err and "role" in err


def test_shipped_accelerate_configs_parse():
    from pathlib import Path

    from accelerate.commands.config.config_args import ClusterConfig

    configs = sorted((Path(__file__).resolve().parents[1] / "configs" / "accelerate").glob("*.yaml"))
    kinds = {ClusterConfig.from_yaml_file(str(p)).distributed_type.value for p in configs}
    assert {"NO", "MULTI_GPU", "FSDP", "DEEPSPEED"} <= kinds


def test_torch_compile_reaches_the_trainer_arguments(tmp_path):
    from tunelens.train.hardware import choose_precision
    from tunelens.train.run import _training_args

    for flag in (False, True):
        cfg = load_config(None, {"torch_compile": flag, "output_dir": str(tmp_path)})
        args = _training_args(cfg, choose_precision("auto"), tmp_path / "ck", dpo=False)
        assert args.torch_compile is flag
        assert not args.bf16  # CPU: fp32 by default
