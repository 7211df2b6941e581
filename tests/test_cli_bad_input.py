"""Bad input through the CLI as a user runs it: one clear message naming the field or the file,
exit code 2 (1 when a curation keeps nothing), never a traceback."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunelens.records import make_conversation, write_jsonl

from _cli import cli

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10" + bytes(range(256)) * 4


def said(err: str, text: str) -> bool:
    """``text`` is in the message, wherever rich wrapped it (even inside a long path)."""
    return "".join(text.split()) in "".join(err.split())


@pytest.fixture()
def sft_data(tmp_path):
    path = tmp_path / "d.jsonl"
    write_jsonl(path, [make_conversation([{"role": "user", "content": f"What is {i} plus {i}?"},
                                          {"role": "assistant", "content": f"{2 * i}."}],
                                         source="t", source_file="inline", row=i, license="MIT")
                       for i in range(4)])
    return path


# ----------------------------------------------------------------------- training numbers

@pytest.mark.parametrize("args, field, message", [
    (["--max-steps", "0"], "max_steps", "must be at least 1 optimizer step, or -1 (or null) to train for `epochs`"),
    (["--max-steps", "-3"], "max_steps", "got -3"),
    (["--epochs", "0"], "epochs", "greater than 0"),
    (["--epochs", "inf"], "epochs", "finite number"),
    (["--lr", "0"], "learning_rate", "greater than 0"),
    (["--lr", "nan"], "learning_rate", "finite number"),
    (["--batch-size", "0"], "batch_size", "greater than or equal to 1"),
    (["--grad-accum", "0"], "grad_accum", "greater than or equal to 1"),
    (["--save-steps", "0"], "save_steps", "greater than or equal to 1"),
    (["--lora-r", "0"], "lora.r", "greater than or equal to 1"),
    (["--lora-dropout", "1"], "lora.dropout", "less than 1"),
    (["--max-length", "4"], "max_length", "greater than or equal to 8"),
    (["--seed", "-1"], "seed", "greater than or equal to 0"),
])
def test_train_rejects_out_of_range_numbers(monkeypatch, capsys, tmp_path, sft_data, args, field, message):
    code, _, err = cli(monkeypatch, capsys, "train", "-m", "tiny-random", "--data", str(sft_data),
                       "-o", str(tmp_path / "o"), *args)
    assert code == 2, err
    assert f"{field}: " in err and message in err
    assert not (tmp_path / "o").exists()  # rejected before anything ran


@pytest.mark.parametrize("yaml_text, field", [
    ("max_steps: 0\n", "max_steps"), ("max_steps: -2\n", "max_steps"), ("weight_decay: -0.1\n", "weight_decay"),
    ("warmup_ratio: 1.5\n", "warmup_ratio"), ("save_total_limit: 0\n", "save_total_limit"),
    ("logging_steps: 0\n", "logging_steps"), ("beta: 0\n", "beta"), ("lora:\n  alpha: 0\n", "lora.alpha"),
    ("seed: 4294967296\n", "seed"),
])
def test_train_config_file_rejects_out_of_range_numbers(monkeypatch, capsys, tmp_path, sft_data, yaml_text, field):
    (tmp_path / "c.yaml").write_text(yaml_text)
    code, _, err = cli(monkeypatch, capsys, "train", "-c", str(tmp_path / "c.yaml"), "--data", str(sft_data),
                       "-o", str(tmp_path / "o"))
    assert code == 2 and f"{field}: " in err and str(tmp_path / "c.yaml") in err, err


@pytest.mark.parametrize("setting", ["train.max_steps=-3", "train.max_steps=0", "train.epochs=0",
                                     "train.lora.r=0", "train.learning_rate=-1"])
def test_run_rejects_bad_train_numbers_before_any_stage(monkeypatch, capsys, tmp_path, setting):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(monkeypatch, capsys, "run", "--tiny", "--set", setting, "--run-dir", str(tmp_path / "run"))
    field = setting.split("=")[0]
    assert code == 2 and f"invalid run config" in err and f"{field}: " in err, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


def test_epoch_mode_is_max_steps_minus_one_or_null(tmp_path):
    from tunelens.pipeline.config import load_run_config, train_config
    from tunelens.train.config import TrainConfig, load_config

    assert TrainConfig().max_steps == -1  # the default: train for `epochs`
    (tmp_path / "null.yaml").write_text("max_steps: null\nepochs: 2\n")
    assert (load_config(tmp_path / "null.yaml").max_steps, load_config(tmp_path / "null.yaml").epochs) == (-1, 2)
    assert load_config(None, {"max_steps": -1}).max_steps == -1
    assert load_config(None, {"max_steps": 7}).max_steps == 7
    # The run's embedded default trains 100 steps; -1 or null switches it to epochs.
    for value in (-1, None):
        run = load_run_config(None, {"train.max_steps": value, "train.epochs": 2})
        cfg = train_config(run, ["x.jsonl"], tmp_path)
        assert (cfg.max_steps, cfg.epochs) == (-1, 2)


def test_train_in_epoch_mode_through_the_cli(monkeypatch, capsys, tmp_path, sft_data, tiny_model_path):
    # 4 records, batch size 2, one epoch: 2 optimizer steps (not the 1 step --max-steps 0 used to run).
    code, _, err = cli(monkeypatch, capsys, "train", "-m", str(tiny_model_path), "--data", str(sft_data),
                       "-o", str(tmp_path / "o"), "--max-steps", "-1", "--epochs", "1", "--batch-size", "2",
                       "--max-length", "64", "--no-memory-check", "-q")
    assert code == 0, err
    summary = json.loads((tmp_path / "o" / "train_summary.json").read_text())
    assert summary["steps"] == 2 and "done: 2 steps" in err


def test_the_installed_program_rejects_max_steps_zero(tmp_path, sft_data):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    program = Path(sys.executable).with_name("tunelens")
    proc = subprocess.run([str(program), "train", "-m", "tiny-random", "--data", str(sft_data), "-o",
                           str(tmp_path / "o"), "--max-steps", "0"], capture_output=True, text=True, env=env, timeout=300)
    err = " ".join(proc.stderr.split())
    assert proc.returncode == 2, proc.stderr
    assert "max_steps: must be at least 1 optimizer step" in err and "Traceback" not in proc.stderr


# ----------------------------------------------------------------------- data files

@pytest.fixture()
def bad_files(tmp_path):
    """A PNG saved as .jsonl, a directory, and a records file with a Latin-1 byte on line 3."""
    binary = tmp_path / "picture.jsonl"
    binary.write_bytes(PNG)
    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    latin = tmp_path / "latin1.jsonl"
    good = json.dumps(make_conversation([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}],
                                        source="t", source_file="inline", row=0, license="MIT"))
    latin.write_bytes((good + "\n" + good + "\n").encode() + good.replace("Hello.", "Caf\u00e9.").encode("latin-1") + b"\n")
    offset = 2 * (len(good) + 1) + good.replace("Hello.", "Caf\u00e9.").index("\u00e9")
    return binary, folder, latin, offset


def test_train_names_a_binary_file_a_directory_and_a_non_utf8_byte(monkeypatch, capsys, tmp_path, bad_files,
                                                                   tiny_model_path):
    binary, folder, latin, offset = bad_files
    base = ["train", "-m", str(tiny_model_path), "-o", str(tmp_path / "o"), "--max-steps", "1", "-q"]
    code, _, err = cli(monkeypatch, capsys, *base, "--data", str(binary))
    assert code == 2 and said(err, f"{binary} is binary, not UTF-8 text (byte 0x89 at offset 0)"), err
    assert "expected a records JSONL file" in err and "utf-8' codec" not in err
    code, _, err = cli(monkeypatch, capsys, *base, "--data", str(folder))
    assert code == 2 and said(err, f"{folder} is a directory, expected a records JSONL file"), err
    assert "not found" not in err
    code, _, err = cli(monkeypatch, capsys, *base, "--data", str(latin))
    assert code == 2 and said(err, f"{latin} is not UTF-8 text (byte 0xe9 at offset {offset}, line 3)"), err
    code, _, err = cli(monkeypatch, capsys, *base, "--data", str(tmp_path / "missing.jsonl"))
    assert code == 2 and said(err, f"data file not found: {tmp_path / 'missing.jsonl'}"), err


@pytest.mark.parametrize("command", ["import", "curate"])
def test_data_import_and_curate_name_a_binary_file_and_a_directory(monkeypatch, capsys, tmp_path, bad_files, command):
    binary, folder, _, _ = bad_files
    out = ["-o", str(tmp_path / ("r.jsonl" if command == "import" else "out"))] + (["-q"] if command == "curate" else [])
    expected = "expected a JSONL/JSON/CSV/TSV/Parquet file"
    code, _, err = cli(monkeypatch, capsys, "data", command, str(binary), *out)
    assert code == 2 and said(err, f"{binary} is binary, not UTF-8 text (byte 0x89 at offset 0); {expected}"), err
    csv = tmp_path / "picture.csv.gz"
    csv.write_bytes(gzip.compress(PNG))
    code, _, err = cli(monkeypatch, capsys, "data", command, str(csv), *out)
    assert code == 2 and said(err, f"{csv} is binary, not UTF-8 text (byte 0x89 at offset 0)"), err
    code, _, err = cli(monkeypatch, capsys, "data", command, str(folder), *out)
    assert code == 2 and said(err, f"{folder} is a directory, {expected}"), err
    assert not (tmp_path / "r.jsonl").exists() and not (tmp_path / "out").exists()


def test_text_with_a_stray_nul_or_latin1_byte_is_not_binary(monkeypatch, capsys, tmp_path):
    # Only a file with both a NUL and a non-UTF-8 byte near its start counts as binary; stray bytes
    # in text stay per-row rejects, so one bad row never stops a curation.
    src = tmp_path / "mostly_fine.jsonl"
    good = json.dumps({"instruction": "Name a planet.", "output": "Mars."})
    src.write_bytes(good.encode() + b'\n{"instruction": "nul \x00 here\n{"instruction": "caf\xe9", "output": "x"}\n')
    code, stdout, err = cli(monkeypatch, capsys, "data", "curate", str(src), "-o", str(tmp_path / "out"), "-q")
    assert code == 0 and "3 in -> 1 kept, 2 rejected" in stdout, err


def test_curate_checks_every_input_before_importing_any(monkeypatch, capsys, tmp_path, sft_data, bad_files):
    binary = bad_files[0]
    code, _, err = cli(monkeypatch, capsys, "data", "curate", str(sft_data), str(binary), "-o", str(tmp_path / "out"), "-q")
    assert code == 2 and said(err, f"{binary} is binary") and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------- nothing kept

ALL_BAD = [
    {"instruction": "Your view?", "input": "", "output": "As an AI language model, I have no views."},  # quality
    {"instruction": "Empty reply", "input": "", "output": "   "},                                        # validate
    "{broken json",                                                                                    # import
]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def test_curate_that_rejects_every_record_fails_loudly_and_still_writes_its_outputs(monkeypatch, capsys, tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in ALL_BAD), encoding="utf-8")
    out = tmp_path / "out"
    code, stdout, err = cli(monkeypatch, capsys, "data", "curate", str(src), "-o", str(out), "-q")
    assert code == 1, err
    assert "3 in -> 0 kept, 3 rejected" in stdout  # the summary table still prints
    assert said(err, f"error: all 3 records were rejected (import (malformed rows): 1, validate: 1, quality: 1); "
                     f"{out / 'curated.jsonl'} is empty. The reason for each record is in {out / 'rejects.jsonl'}"), err
    for name in ("curated.jsonl", "rejects.jsonl", "changes.jsonl", "datasheet.md", "curate_report.json"):
        assert (out / name).is_file(), name
    assert _lines(out / "curated.jsonl") == [] and len(_lines(out / "rejects.jsonl")) == 3
    assert json.loads((out / "curate_report.json").read_text())["rejected"] == 3

    # One record kept is a success (exit 0), as before.
    src.write_text(src.read_text() + json.dumps({"instruction": "Name a planet.", "output": "Mars."}) + "\n")
    code, stdout, err = cli(monkeypatch, capsys, "data", "curate", str(src), "-o", str(tmp_path / "out2"), "-q")
    assert code == 0 and "4 in -> 1 kept, 3 rejected" in stdout and "error" not in err, err


def test_import_where_every_row_is_malformed_fails_loudly(monkeypatch, capsys, tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text('{broken json\n[1, 2]\n{"instruction": "no output"}\n', encoding="utf-8")
    code, _, err = cli(monkeypatch, capsys, "data", "import", str(src), "-o", str(tmp_path / "r.jsonl"), "-f", "alpaca")
    assert code == 1 and said(err, f"all 3 rows of {src} were malformed: no records imported. "
                                   f"The reason for each row is in {tmp_path / 'r.rejects.jsonl'}"), err
    assert len(_lines(tmp_path / "r.rejects.jsonl")) == 3 and _lines(tmp_path / "r.jsonl") == []
