"""The multiple-choice suites' continuations scored through llama.cpp (``LlamaCppBackend.continuation_logprobs``,
``generation.logprob_backend``): the same numbers as the torch engines, within what llama.cpp's f16 KV cache
rounds, and never mixed with them in the cache."""

from __future__ import annotations

import json

import pytest

from _llama import requires_usable_llama_cpp

from tunelens.errors import TunelensError

pytestmark = requires_usable_llama_cpp()

Q1 = [{"role": "user", "content": "What is the capital of France?"}]
Q2 = [{"role": "user", "content": "Name a fruit that is yellow."}]
PAIRS = [(Q1, "Paris."), (Q1, "It is Lyon, a city in the south of the country."), (Q1, "London"), (Q1, "A"),
         (Q2, "A banana."), (Q2, "Lemons, and sometimes yellow apples or pears."), (Q2, "B")]


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    from tunelens.generate.backends import load_backend
    from tunelens.models import load_model

    loaded = load_model(str(tiny_model_path))
    cpp = load_backend(str(tiny_model_path), "llamacpp", quant="f32", loaded=loaded, progress=False)
    yield loaded, cpp
    cpp.close()


def _close(got, ref):
    """Equal token counts, and log-probs within llama.cpp's rounding. Its KV cache is f16 (about 3 decimal
    digits), so a continuation's summed log-prob moves by about 1e-3 of its size; 1e-2 relative (floor 1e-2
    nats) leaves a 10x margin and still fails on any wrong token, position or mask (those move a sum by
    whole nats)."""
    assert [n for _, n in got] == [n for _, n in ref]
    for (a, _), (b, _) in zip(got, ref):
        assert abs(a - b) <= 1e-2 * max(1.0, abs(b)), (a, b)


@pytest.mark.numeric  # compared with torch's values: rerun by make test-numerics under other kernels
def test_llamacpp_scores_continuations_as_the_torch_engines(tiny):
    from tunelens.evaluate.logprob import continuation_logprobs

    loaded, cpp = tiny
    ref = continuation_logprobs(loaded.model, loaded.tokenizer, PAIRS, engine="full")
    got = continuation_logprobs(loaded.model, loaded.tokenizer, PAIRS, backend=cpp)
    _close(got, ref)
    # a one-token continuation is scored from its prompt's last position only
    assert [n for _, n in got][3] == 1 and got[3][0] < 0


@pytest.mark.numeric
def test_trees_split_over_calls_score_the_same(tiny, tiny_model_path):
    """More continuations than sequences per call, or more tokens or scored positions than a call holds:
    the prompt is decoded again for each part, a pair longer than a call gets one (and a context) of its
    own, a model whose context is shorter than a call gets calls that fit it, and the results do not change.
    Longer than the model's context is an error."""
    from tunelens.evaluate.logprob import continuation_logprobs
    from tunelens.generate.backends import load_backend

    loaded, cpp = tiny
    whole = continuation_logprobs(loaded.model, loaded.tokenizer, PAIRS, backend=cpp)
    for limits in ({"SCORE_SEQS": 2}, {"SCORE_TOKENS": 64, "SCORE_OUTPUTS": 16}, {"SCORE_TOKENS": 8},
                   {"train_ctx": 64}, {"train_ctx": 8}):
        small = load_backend(str(tiny_model_path), "llamacpp", quant="f32", loaded=loaded, progress=False)
        try:
            for name, value in limits.items():
                setattr(small, name, value)
            if limits.get("train_ctx") == 8:
                with pytest.raises(TunelensError, match="more than the model's context"):
                    continuation_logprobs(loaded.model, loaded.tokenizer, PAIRS[:1], backend=small)
            else:
                _close(continuation_logprobs(loaded.model, loaded.tokenizer, PAIRS, backend=small), whole)
        finally:
            small.close()


def _eval(tmp_path, model, data, name, **generation):
    from tunelens.evaluate import EvalConfig, evaluate

    config = EvalConfig(models=[{"spec": str(model), "label": "m"}], suites=["ifeval", "truthfulqa_mc"], limit=3,
                        output_dir=tmp_path / name, cache_dir=tmp_path / "cache", data_dir=data, bootstrap_resamples=100,
                        generation={"max_new_tokens": 4, **generation})
    report = evaluate(config, progress=False)
    per_item = {s["item_id"]: s["scores"]["mc2"] for s in map(json.loads, (tmp_path / name / "samples.jsonl").open())
                if s["suite"] == "truthfulqa_mc"}
    return report, per_item


def test_eval_scores_mc_suites_through_llamacpp_at_f16_records_it_and_keeps_its_own_cache(tmp_path, tiny_model_path,
                                                                                          shared_data):
    hf_report, hf_items = _eval(tmp_path, tiny_model_path, shared_data, "hf", backend="llamacpp", quant="f16",
                                logprob_backend="hf")
    assert hf_report["models"]["m"]["logprob_backend"]["backend"] == "hf"
    before = set((tmp_path / "cache").glob("*-logprobs-*.jsonl"))
    report, items = _eval(tmp_path, tiny_model_path, shared_data, "auto", backend="llamacpp", quant="f16")
    info = report["models"]["m"]["logprob_backend"]
    assert (info["backend"], info["quant"]) == ("llamacpp", "f16") and info["note"].startswith("auto: llamacpp")
    assert info["gguf_sha256"] == report["models"]["m"]["generation_backend"]["gguf_sha256"]
    # scored afresh into a cache file of its own: fp32 values are never read back as llama.cpp's
    assert report["cost"]["m"]["cached_logprobs"]["found"] == 0
    assert len(set((tmp_path / "cache").glob("*-logprobs-*.jsonl")) - before) == 1
    assert items.keys() == hf_items.keys() and len(items) == 3
    for k in items:  # MC2 is a probability share: f16's rounding moves it by far less than 0.05
        assert abs(items[k] - hf_items[k]) <= 0.05, (k, items[k], hf_items[k])
    page = (tmp_path / "auto" / "report.html").read_text(encoding="utf-8")
    assert "multiple-choice log-probs by" in page and f"llamacpp f16 (GGUF {info['gguf_sha256'][:12]})" in page
    # again: every value from that cache
    report, _ = _eval(tmp_path, tiny_model_path, shared_data, "again", backend="llamacpp", quant="f16")
    cached = report["cost"]["m"]["cached_logprobs"]
    assert cached["found"] == cached["looked_up"] > 0


def test_auto_keeps_q8_0_log_probs_in_transformers(tmp_path, tiny_model_path, shared_data):
    report, _ = _eval(tmp_path, tiny_model_path, shared_data, "q8", backend="llamacpp", quant="q8_0")
    info = report["models"]["m"]["logprob_backend"]
    assert info["backend"] == "hf" and "q8_0" in info["note"]
