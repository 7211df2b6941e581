"""GRPO resumes exactly after SIGTERM and after SIGKILL (same sampled completions, same weights as
an uninterrupted run), and runs unchanged under `accelerate launch` (2 CPU processes, gloo)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import yaml
from safetensors.torch import load_file

from _grpo import build
from _numerics import assert_close_relative
from _toy import one_thread
from test_train_resume import interrupt_after_first_checkpoint

from tunelens.train import train
from tunelens.train.config import load_config

STEPS, SAVE = 10, 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grpo_resume")
    paths = build(tmp)
    config = tmp / "grpo.yaml"
    config.write_text(yaml.safe_dump({
        "method": "grpo", "model": str(paths["model"]), "data": [str(paths["prompts"])], "max_length": 64,
        "batch_size": 8, "learning_rate": 1e-2, "seed": 5, "max_steps": STEPS, "save_steps": SAVE,
        "lora": {"r": 4, "alpha": 8},
        "grpo": {"num_generations": 4, "max_completion_length": 6, "kl_beta": 0.04,
                 "rewards": [{"name": "python", "options": {"function": "grpo_rewards:apple"}}]},
    }))
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join([str(paths["rewards_dir"]), os.environ.get("PYTHONPATH", "")]))
    reference = tmp / "reference"
    sys.path.insert(0, str(paths["rewards_dir"]))
    with one_thread():  # in-process, as the resumed half below; the interrupted half runs in a child process
        train(load_config(config, {"output_dir": str(reference)}), progress=False)
    yield tmp, config, env, reference
    sys.path.remove(str(paths["rewards_dir"]))
    sys.modules.pop("grpo_rewards", None)


def cli(config, out, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tunelens.train", "--config", str(config), "-o", str(out), "--quiet", *extra]


def metrics(out) -> list[dict]:
    return [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.numeric
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_grpo_resume_matches_the_uninterrupted_run(setup, sig, monkeypatch):
    tmp, config, env, reference = setup
    out = tmp / f"interrupted-{sig.name}"
    for key, value in env.items():  # interrupt_after_first_checkpoint starts the child with os.environ
        monkeypatch.setenv(key, value)
    done = interrupt_after_first_checkpoint(cli(config, out), out, sig)
    if done.returncode == 0:
        pytest.fail("the run finished before the signal arrived; cannot test resume")
    if sig == signal.SIGTERM:
        assert done.returncode == 143, done.stderr[-2000:]
        assert json.loads((out / "train_summary.json").read_text())["interrupted"] is True
    else:
        assert done.returncode == -signal.SIGKILL
    assert not (out / "adapter").exists()
    stopped_at = max(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*"))
    assert SAVE <= stopped_at < STEPS

    with one_thread():
        result = train(load_config(config, {"output_dir": str(out), "resume": True}), progress=False)
    assert result.steps == STEPS
    got_m, ref_m = metrics(out), metrics(reference)
    assert [r["step"] for r in got_m] == list(range(1, STEPS + 1))
    # The same sampled completions (same RNG state and prompt order after the checkpoint) give the
    # same rewards, lengths and tokens step by step; the weights agree to fp32 summation order.
    for got, ref in zip(got_m, ref_m, strict=True):
        assert got["reward"] == pytest.approx(ref["reward"], rel=1e-4, abs=1e-6), got["step"]
        assert got["completion_length"] == pytest.approx(ref["completion_length"], rel=1e-6), got["step"]
    ref_w = load_file(str(reference / "adapter" / "adapter_model.safetensors"))
    got_w = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert ref_w.keys() == got_w.keys()
    for name in ref_w:
        assert_close_relative(got_w[name], ref_w[name], rel=1e-4, what=name)


def test_grpo_two_process_cpu_ddp(setup):
    import torch

    from tunelens.models import load_model

    tmp, config, env, _ = setup
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or "accelerate"
    out = tmp / "ddp"
    # 4 completions per process per step, 2 processes: 2 prompts x 4 completions per step, groups split over processes.
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29541",
           "-m", "tunelens.train", "--config", str(config), "-o", str(out), "--max-steps", "2", "--save-steps", "1",
           "--batch-size", "4", "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["distributed_backend"] == "gloo"
    rows = metrics(out)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["generate_tokens"] > 0 and "reward_python" in r for r in rows)
    assert (out / "checkpoints" / "checkpoint-2").is_dir()
    loaded = load_model(str(out / "adapter"))
    with torch.no_grad():
        assert torch.isfinite(loaded.model(input_ids=torch.tensor([[1, 2, 3]])).logits).all()
