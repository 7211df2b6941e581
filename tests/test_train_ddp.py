"""Training runs unchanged under `accelerate launch`: a 2-process CPU DDP job (gloo)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import torch

from tunelens.records import make_conversation, write_jsonl


def test_two_process_cpu_ddp_completes_and_saves_a_loadable_adapter(tmp_path, tiny_model_path):
    from tunelens.models import load_model

    data = tmp_path / "d.jsonl"
    write_jsonl(data, [make_conversation([{"role": "user", "content": f"Count to {i}."},
                                          {"role": "assistant", "content": " ".join(str(k) for k in range(i))}],
                                         source="t", source_file="inline", row=i, license="MIT")
                       for i in range(1, 9)])
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or "accelerate"
    out = tmp_path / "out"
    # --multi_gpu selects accelerate's torchrun launcher; without CUDA the Trainer joins a gloo CPU group.
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533",
           "-m", "tunelens.train", "--model", str(tiny_model_path), "--data", str(data), "-o", str(out),
           "--max-steps", "2", "--save-steps", "1", "--batch-size", "2", "--quiet"]
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["distributed_backend"] == "gloo"
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    # 8 examples, 2 per process per step, 2 processes: each step covers half an epoch (one process: a quarter).
    assert [r["step"] for r in rows] == [1, 2] and rows[0]["epoch"] == 0.5
    assert (out / "checkpoints" / "checkpoint-2").is_dir()
    loaded = load_model(str(out / "adapter"))
    with torch.no_grad():
        logits = loaded.model(input_ids=torch.tensor([[1, 2, 3]])).logits
    assert torch.isfinite(logits).all()
