"""The run's explain stage generates its responses with the configured generation backend and
attributes exactly the text that backend produced (the attributions themselves stay in transformers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _llama import requires_usable_llama_cpp
from rich.console import Console

from tunelens.generate import GenerationResult
from tunelens.generate.backends import BackendInfo
from tunelens.pipeline.config import load_run_config
from tunelens.pipeline.presets import TINY


def _ctx(tmp_path: Path, **overrides):
    from tunelens.pipeline.stages import Context

    config = load_run_config(None, {**TINY, "run_dir": str(tmp_path / "run"), **overrides})
    return Context(config=config, dir=tmp_path / "run", progress=False, console=Console(quiet=True))


def _explain(ctx, tuned_dir: Path) -> dict:
    from tunelens.pipeline.explain_stage import explain_run

    explain_run(ctx, tuned_dir)
    return json.loads((ctx.dir / "explain" / "explain.json").read_text(encoding="utf-8"))


def _prompts(ctx) -> list[list[dict]]:
    """The prompts the stage explains, in its order (focus items, then the heatmap sample)."""
    from tunelens.pipeline.explain_stage import _prompt_only, pick_items

    e = ctx.config.explain
    return [_prompt_only(r)["messages"] for r in pick_items(ctx, max(e.focus_items, e.n_items))]


def test_explain_generation_follows_evaluate_unless_set():
    assert load_run_config(None).explain_generation() == ("auto", "auto")  # the run's default: evaluate's auto
    cfg = load_run_config(None, {"evaluate.backend": "llamacpp", "evaluate.quant": "f16"})
    assert cfg.explain_generation() == ("llamacpp", "f16")
    cfg = load_run_config(None, {"evaluate.backend": "llamacpp", "explain.backend": "hf"})
    assert cfg.explain_generation() == ("hf", "auto")
    with pytest.raises(Exception, match="explain.backend"):
        load_run_config(None, {"explain.backend": "onnx"})


def test_explain_hash_is_unchanged_for_hf_and_follows_the_backend(tmp_path, tiny_model_path, monkeypatch):
    from tunelens.pipeline import stages

    monkeypatch.setattr(stages, "tuned_model_dir", lambda ctx: Path(tiny_model_path))
    hf = stages.explain_payload(_ctx(tmp_path, **{"evaluate.backend": "hf"}))
    # What the payload was before the backend setting existed: a run's explain with hf stays complete.
    assert "generation" not in hf and "backend" not in hf["explain"] and "quant" not in hf["explain"]
    assert stages.explain_payload(_ctx(tmp_path, **{"explain.backend": "hf"})) == hf
    # the default (auto) is part of the hash: a run that generated with hf is redone
    assert stages.explain_payload(_ctx(tmp_path))["generation"] == {"backend": "auto", "quant": "auto"}
    cpp = stages.explain_payload(_ctx(tmp_path, **{"evaluate.backend": "llamacpp"}))
    assert cpp["generation"] == {"backend": "llamacpp", "quant": "auto"}
    assert stages.explain_payload(_ctx(tmp_path, **{"explain.backend": "llamacpp", "explain.quant": "f16"})) \
        != cpp


def test_hf_explains_the_models_own_greedy_responses(tmp_path, tiny_model_path):
    from tunelens.explain.runs import greedy_responses
    from tunelens.models import load_model

    ctx = _ctx(tmp_path, **{"evaluate.backend": "hf"})
    doc = _explain(ctx, Path(tiny_model_path))
    assert doc["generation"]["base"]["backend"] == doc["generation"]["tuned"]["backend"] == "hf"
    lm = load_model(str(tiny_model_path))
    expected = greedy_responses(lm, _prompts(ctx)[: ctx.config.explain.n_items], ctx.config.explain.max_new_tokens)
    for k, entry in enumerate(doc["heatmaps"]):
        if entry["response_source"]["tuned"] == "model":
            assert entry["response"]["tuned"] == expected[k]


class FakeBackend:
    """Stands in for llama.cpp: answers every prompt with a text no transformers model would write."""

    name = "llamacpp"

    def __init__(self, spec: str, quant: str, log: list):
        self.spec, self.log, self.closed = spec, log, False
        self.info = BackendInfo("llamacpp", spec, quant=quant, gguf="fake.gguf", gguf_sha256="0" * 64)

    def generate(self, prompts, params=None, progress=False):
        self.log.append((self.spec, list(prompts), params.max_new_tokens))
        return [GenerationResult(f"Backend answer {k}: 12 apples.\nAnswer: {k + 3}", 5, 9, "eos", 0.0)
                for k in range(len(prompts))]

    def close(self):
        self.closed = True


def test_the_configured_backend_generates_and_hf_attributes_its_text(tmp_path, tiny_model_path, monkeypatch):
    """Every explained response (focus, heatmaps, rationales) comes from the backend; the attribution
    of each is computed on exactly that text (its output tokens decode to it)."""
    import tunelens.generate.backends as b

    made: list[FakeBackend] = []
    calls: list = []

    def fake_load(spec, name="auto", *, quant="q8_0", progress=True, say=None, loaded=None):
        assert name == "llamacpp"
        made.append(FakeBackend(spec, quant, calls))
        return made[-1]

    monkeypatch.setattr(b, "load_backend", fake_load)
    ctx = _ctx(tmp_path, **{"evaluate.backend": "llamacpp", "explain.quant": "f16"})
    doc = _explain(ctx, Path(tiny_model_path))

    assert {m.spec for m in made} == {"tiny-random", str(tiny_model_path)} and all(m.closed for m in made)
    for label in ("base", "tuned"):
        info = doc["generation"][label]
        assert (info["backend"], info["quant"], info["gguf_sha256"]) == ("llamacpp", "f16", "0" * 64)
    # the response prompts (message lists) and the rationale prompts (rendered strings) both went to the backend
    assert any(isinstance(p[0], list) for _, p, _ in calls) and any(isinstance(p[0], str) for _, p, _ in calls)
    attributions = json.loads((ctx.dir / "explain" / "instruction_focus.json").read_text(encoding="utf-8"))
    assert attributions  # the focus comparison ran on the backend's (non-empty) responses
    for k, entry in enumerate(doc["heatmaps"]):
        for label in ("base", "tuned"):
            assert entry["response"][label] == f"Backend answer {k}: 12 apples.\nAnswer: {k + 3}"
            assert entry["response_source"][label] == "model"
    rationale = json.loads((ctx.dir / "explain" / "rationale_tuned.json").read_text(encoding="utf-8"))
    assert rationale["n_evaluated"] == 1 and rationale["items"][0]["final_answer"] == 3.0


@requires_usable_llama_cpp()
def test_llamacpp_generates_the_explained_responses(tmp_path, tiny_model_path):
    from tunelens.generate import GenerationParams
    from tunelens.generate.backends import load_backend

    ctx = _ctx(tmp_path, **{"explain.backend": "llamacpp", "explain.quant": "f32"})
    doc = _explain(ctx, Path(tiny_model_path))
    info = doc["generation"]["tuned"]
    assert (info["backend"], info["quant"], len(info["gguf_sha256"])) == ("llamacpp", "f32", 64)
    backend = load_backend(str(tiny_model_path), "llamacpp", quant="f32")
    try:
        e = ctx.config.explain
        expected = [r.text for r in backend.generate(_prompts(ctx)[: e.n_items],
                                                     GenerationParams(max_new_tokens=e.max_new_tokens))]
    finally:
        backend.close()
    for k, entry in enumerate(doc["heatmaps"]):
        if entry["response_source"]["tuned"] == "model":
            assert entry["response"]["tuned"] == expected[k]
