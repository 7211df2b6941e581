"""Slow: the real SmolLM2-135M through `tunelens eval` end to end, --limit 20.

Suites ifeval (generation + checkers) and loss (teacher forcing), with max_new_tokens=24, so
the run stays under ~150 s on 2 shared CPU cores; the other suites are covered on the tiny model.
"""

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_smollm2_eval_limit_20(tmp_path, smollm2_path, shared_data):
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", "from tunelens.cli import main; main()", "eval", "-m", "smollm2-135m",
           "--suite", "ifeval,loss", "--limit", "20", "--max-new-tokens", "24", "--batch-size", "20",
           "--data-dir", str(shared_data), "--cache-dir", str(tmp_path / "cache"), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "results.json").read_text())
    res = report["results"]["smollm2-135m"]
    assert res["ifeval"]["prompt_level_strict_acc"]["n"] == 20
    assert res["ifeval"]["prompt_level_loose_acc"]["value"] >= res["ifeval"]["prompt_level_strict_acc"]["value"]
    assert res["ifeval"]["inst_level_loose_acc"]["value"] >= res["ifeval"]["inst_level_strict_acc"]["value"]
    # A trained model is far below the ~10.8 nats/token of uniform guessing over its vocabulary.
    assert 0.5 < res["loss"]["loss"]["value"] < 4.0
    samples = [json.loads(line) for line in (out / "samples.jsonl").open()]
    texts = [s["output"] for s in samples if s["suite"] == "ifeval"]
    assert len(texts) == 20 and sum(len(t.split()) >= 5 for t in texts) >= 15  # real words, not noise
    cost = report["cost"]["smollm2-135m"]
    assert cost["completion_tokens"] > 20 * 5 and cost["tokens_per_s"] > 0
