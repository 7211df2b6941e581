"""Interrupt a training run (SIGTERM, SIGKILL) after its first checkpoint, resume it, and compare
with an uninterrupted run: same steps, same data order, same optimizer state -> same weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from tunelens.records import make_conversation, write_jsonl
from tunelens.train import TrainConfig, train

from _numerics import assert_close_relative

STEPS, SAVE = 10, 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_path):
    tmp = tmp_path_factory.mktemp("resume")
    pairs = [(f"Question number {i}: what is {i} plus {i}?", f"It is {2 * i}." + " Indeed." * (i % 4))
             for i in range(12)]
    data = tmp / "d.jsonl"
    write_jsonl(data, [make_conversation([{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                                         source="t", source_file="inline", row=i, license="MIT")
                       for i, (q, a) in enumerate(pairs)])
    # Dropout on, so the RNG state must be restored too; length grouping on, so must the sampler order.
    base = dict(model=str(tiny_model_path), data=[str(data)], max_steps=STEPS, save_steps=SAVE, batch_size=2,
                learning_rate=1e-3, seed=3, lora={"dropout": 0.1}, group_by_length=True)
    reference = TrainConfig(output_dir=str(tmp / "reference"), **base)
    train(reference, progress=False)
    return tmp, base, reference


def cli_args(cfg: dict, out) -> list[str]:
    return [sys.executable, "-m", "tunelens.train", "--model", cfg["model"], "--data", cfg["data"][0], "-o", str(out),
            "--max-steps", str(STEPS), "--save-steps", str(SAVE), "--batch-size", "2", "--lr", "1e-3",
            "--seed", "3", "--lora-dropout", "0.1", "--group-by-length", "--quiet"]


def interrupt_after_first_checkpoint(cmd: list[str], out, sig: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = out / "checkpoints" / f"checkpoint-{SAVE}" / "trainer_state.json"
    deadline = time.monotonic() + 300
    while not first.exists():
        if proc.poll() is not None:
            pytest.fail(f"training exited before its first checkpoint: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("no checkpoint within 300 s")
        time.sleep(0.01)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def adapter_weights(out) -> dict[str, torch.Tensor]:
    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


def metrics(out) -> list[dict]:
    return [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.numeric
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_resume_matches_uninterrupted_run(setup, sig):
    tmp, base, reference = setup
    out = tmp / f"interrupted-{sig.name}"
    done = interrupt_after_first_checkpoint(cli_args(base, out), out, sig)
    if done.returncode == 0:
        pytest.fail("the run finished before the signal arrived; cannot test resume")
    if sig == signal.SIGTERM:
        # Graceful: exit code 143, a checkpoint at the step where the signal landed, no final adapter.
        assert done.returncode == 143, done.stderr[-2000:]
        assert "checkpoint saved" in done.stderr
        assert json.loads((out / "train_summary.json").read_text())["interrupted"] is True
    else:
        assert done.returncode == -signal.SIGKILL
    assert not (out / "adapter").exists()
    stopped_at = max(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*"))
    assert SAVE <= stopped_at < STEPS

    result = train(TrainConfig(output_dir=str(out), resume=True, **base), progress=False)
    assert result.steps == STEPS
    ref_w, got_w = adapter_weights(reference.out), adapter_weights(out)
    assert ref_w.keys() == got_w.keys()
    for name in ref_w:
        # Same batches, dropout masks and optimizer moments give the same arithmetic; the only
        # differences allowed are fp32 summation-order effects (the interrupted half ran in
        # another process, whose kernels may block reductions for another thread count). Adam
        # divides by sqrt(v), so a rounding in a near-zero gradient entry can move that weight
        # by up to lr: compare the tensor to its own size, not entry by entry. Bit-equal on the
        # hosts measured; 1e-4 of the tensor's size is ~800 fp32 roundings.
        assert_close_relative(got_w[name], ref_w[name], rel=1e-4, what=name)
    ref_m, got_m = metrics(reference.out), metrics(out)
    assert [r["step"] for r in got_m] == list(range(1, STEPS + 1))
    assert got_m[-1]["loss"] == pytest.approx(ref_m[-1]["loss"], rel=1e-4)  # same tolerance as the weights
    assert [r["supervised_tokens"] for r in got_m[1:]] == [r["supervised_tokens"] for r in ref_m[1:]]


def test_resume_without_checkpoint_is_an_error(setup, tmp_path):
    from tunelens.errors import TunelensError

    _, base, _ = setup
    with pytest.raises(TunelensError, match="no checkpoint to resume"):
        train(TrainConfig(output_dir=str(tmp_path / "empty"), resume=True, **base), progress=False)


def test_existing_checkpoints_need_resume(setup):
    from tunelens.errors import TunelensError

    _, base, reference = setup
    with pytest.raises(TunelensError, match="--resume"):
        train(TrainConfig(output_dir=str(reference.out), **base), progress=False)
