"""Building a cached model: processes racing on one empty cache, and interrupted builds.

Every process here gets its own fresh TUNELENS_CACHE (a tmp dir), so these tests build the
tokenizer and tiny-random from scratch and never touch the session's shared cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Each worker imports everything first, says it is ready, then waits for "go": the builds
# then start at the same moment, which is what made two of three 4-process trials crash.
WORKER = r"""
import hashlib, json, os, sys, time
from pathlib import Path
from tunelens.models import resolve_model
import torch, transformers  # noqa: F401  (imported before the start line, not during the race)

ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.write_text("ready")
while not go.exists():
    time.sleep(0.01)
path, model_id, _ = resolve_model("tiny-random", progress=False)
from transformers import AutoConfig, AutoTokenizer
config = AutoConfig.from_pretrained(str(path))
tok = AutoTokenizer.from_pretrained(str(path))
weights = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
print(json.dumps({"path": str(path), "weights": weights, "layers": config.num_hidden_layers,
                  "vocab": len(tok), "chat": bool(tok.chat_template)}))
"""


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "TUNELENS_CACHE": str(cache), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _leftovers(cache: Path) -> list[str]:
    """Temporary or half-built entries anywhere in the cache (lock files are not leftovers)."""
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*")
                  if ".tmp" in p.name or ".old-" in p.name)


def _check_checkpoint(path: Path) -> None:
    from tunelens.models import load_model

    assert (path / ".tunelens-complete").is_file() and (path / "config.json").is_file()
    loaded = load_model(str(path))
    assert loaded.model.config.num_hidden_layers == 2 and loaded.tokenizer.chat_template


def test_four_processes_build_tiny_random_into_one_empty_cache(tmp_path):
    cache = tmp_path / "cache"
    procs = []
    for i in range(4):
        ready, go = tmp_path / f"ready{i}", tmp_path / "go"
        procs.append((ready, subprocess.Popen([sys.executable, "-c", WORKER, str(ready), str(go)], env=_env(cache),
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    deadline = time.monotonic() + 300
    while not all(ready.exists() for ready, _ in procs):
        assert time.monotonic() < deadline, "workers did not start"
        assert all(p.poll() is None for _, p in procs), [p.communicate() for _, p in procs if p.poll() is not None]
        time.sleep(0.05)
    (tmp_path / "go").write_text("go")
    results = []
    for _, proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert len({json.dumps(r, sort_keys=True) for r in results}) == 1, results  # one checkpoint, same for all
    assert results[0]["layers"] == 2 and results[0]["chat"] and results[0]["vocab"] > 1000
    assert _leftovers(cache) == []
    assert sorted(p.name for p in (cache / "models").iterdir() if not p.name.endswith(".lock")) == ["tiny-random"]
    _check_checkpoint(Path(results[0]["path"]))


# The build is killed (SIGKILL: no cleanup code runs) after it wrote part of the checkpoint.
KILLED_WORKER = r"""
import os, signal
from transformers import LlamaForCausalLM
from tunelens.models import resolve_model

def die(self, directory, *args, **kwargs):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as fh:
        fh.write("{half written")
    os.kill(os.getpid(), signal.SIGKILL)

LlamaForCausalLM.save_pretrained = die
resolve_model("tiny-random", progress=False)
"""


def test_a_killed_build_does_not_break_the_next_one(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    proc = subprocess.run([sys.executable, "-c", KILLED_WORKER], env=_env(cache), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert [name for name in _leftovers(cache) if name.startswith("models/")], "the killed build left nothing behind?"
    assert not (cache / "models" / "tiny-random").exists()  # never renamed into place half-built

    # Leftovers of older versions and of a failed replacement too: a fixed '.tmp' dir and a
    # half-built final directory without the completion marker.
    (cache / "models" / "tiny-random.tmp").mkdir()
    (cache / "models" / "tiny-random.tmp" / "config.json").write_text("{junk")
    (cache / "models" / "tiny-random").mkdir()
    (cache / "models" / "tiny-random" / "config.json").write_text("{junk")

    monkeypatch.setenv("TUNELENS_CACHE", str(cache))
    from tunelens.models import resolve_model

    path, _, _ = resolve_model("tiny-random", progress=False)
    assert path == cache / "models" / "tiny-random"
    assert _leftovers(cache) == []
    _check_checkpoint(path)


def test_a_failed_build_removes_its_temporary_directory(tmp_path):
    from tunelens.models.loading import build_atomically

    out = tmp_path / "models" / "thing"

    def broken(tmp: Path) -> None:
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        build_atomically(out, broken)
    assert not out.exists() and _leftovers(tmp_path) == []

    def good(tmp: Path) -> None:
        (tmp / "config.json").write_text("{}")

    assert build_atomically(out, good) == out and (out / ".tunelens-complete").is_file()
    calls = []
    build_atomically(out, lambda tmp: calls.append(tmp))  # complete: not rebuilt
    assert calls == [] and _leftovers(tmp_path) == []
