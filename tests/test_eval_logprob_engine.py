"""The packed log-prob engine (prompt trees packed into rows under a 4-D mask) against the plain
full-sequence reference, the held-out loss computed without packing, and the log-prob cache."""

from __future__ import annotations

import json

import pytest

from _toy import toy_model, word_tokenizer

WORDS = "yes no maybe why sky blue red green one two three four five six seven eight".split()
# Toy-model log-probs are O(1-10) nats summed over a few fp32 tokens; packing changes only the
# order of float additions inside the matmuls (1e-6 relative), so 1e-4 is loose and still catches
# any masking or position error (those move a log-prob by O(0.1) or more).
TOL = 1e-4


@pytest.fixture(scope="module")
def toy():
    """A toy Llama with sharp attention: at its random init (std 0.02) attention is near uniform, so
    positions and masks would hardly matter and a wrong one could pass."""
    import torch

    tok = word_tokenizer(WORDS)
    model = toy_model(tok, seed=5)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(30)
            layer.self_attn.k_proj.weight.mul_(30)
    return model, tok


def _pairs():
    prompts = ["why sky", "sky blue why red green one two three four five six seven eight " * 3, "blue", "one"]
    conts = ["yes", "no maybe blue", "maybe", "blue sky yes no red green", "eight seven six five four three two one"]
    return [([{"role": "user", "content": q}], c) for q in prompts for c in conts]


def _close(a, b):
    assert len(a) == len(b)
    for (x, n), (y, m) in zip(a, b):
        assert n == m
        assert x == pytest.approx(y, rel=TOL, abs=TOL)


@pytest.mark.parametrize("row_tokens,batch_tokens", [(256, 2048), (16, 16), (40, 80)])
def test_packed_engine_equals_full_sequences(toy, row_tokens, batch_tokens, monkeypatch):
    """Several trees per row, a tree longer than its row, one row per forward: all the same numbers."""
    import tunelens.evaluate.logprob as lp

    model, tok = toy
    monkeypatch.setattr(lp, "_packed_scores", _with_defaults(lp._packed_scores, row_tokens, batch_tokens))
    pairs = _pairs()
    packed = lp.continuation_logprobs(model, tok, pairs, engine="packed")
    full = lp.continuation_logprobs(model, tok, pairs, batch_size=3, engine="full")
    cached = lp.continuation_logprobs(model, tok, pairs, batch_size=3, engine="prefix_cache")
    _close(packed, full)
    _close(cached, full)
    # context matters in this model: the same continuation scores differently after different prompts
    assert len({round(packed[i][0], 3) for i in range(0, len(pairs), 5)}) == 4


def _with_defaults(fn, row_tokens, batch_tokens):
    def call(model, trees, n_slots, **kw):
        return fn(model, trees, n_slots, row_tokens=row_tokens, batch_tokens=batch_tokens)
    return call


def test_pack_fills_rows_and_gives_long_trees_their_own():
    from tunelens.evaluate.logprob import _pack, _Tree

    trees = [_Tree(list(range(n))) for n in (10, 200, 30, 50, 300, 5)]
    rows = sorted(sorted(r) for r in _pack(trees, 100))
    assert rows == [[0, 2, 3, 5], [1], [4]]  # 50+30+10+5 share a row; trees longer than a row are alone


def test_fallback_without_a_separate_head_gives_the_same(toy):
    """A config with a logit scale makes the engine take whole logits instead of head(hidden)."""
    import copy

    from tunelens.evaluate.logprob import _head_and_body, continuation_logprobs

    model, tok = toy
    scaled = copy.deepcopy(model)
    scaled.config.logit_scale = 1.0  # Llama ignores it; the engine must not assume so
    assert _head_and_body(model) is not None and _head_and_body(scaled) is None
    pairs = _pairs()[:8]
    _close(continuation_logprobs(scaled, tok, pairs), continuation_logprobs(model, tok, pairs, engine="full"))


def test_unknown_engine_is_named():
    from tunelens.errors import TunelensError
    from tunelens.evaluate.logprob import continuation_logprobs

    with pytest.raises(TunelensError, match="unknown log-prob engine 'fast'"):
        continuation_logprobs(None, None, [], engine="fast")


def test_sequence_nll_equals_per_example_cross_entropy(toy):
    """The loss suite's packed NLL against one forward per example (the loss suite of old)."""
    import torch

    from tunelens.evaluate.logprob import sequence_nll
    from tunelens.train.masking import IGNORE_INDEX, encode_for_sft

    model, tok = toy
    convs = [[{"role": "user", "content": "why sky"}, {"role": "assistant", "content": "blue " * k + "yes"},
              {"role": "user", "content": "one two"}, {"role": "assistant", "content": "three four"}] for k in range(6)]
    convs.append([{"role": "user", "content": "red " * 40}, {"role": "assistant", "content": "green"}])
    encs = [encode_for_sft(tok, c, None) for c in convs]
    got = sequence_nll(model, [(e["input_ids"], e["labels"]) for e in encs], ignore_index=IGNORE_INDEX,
                       row_tokens=64, batch_tokens=128)
    for e, (nll, n) in zip(encs, got):
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([e["input_ids"]])).logits[0, :-1].float()
        targets = torch.tensor(e["labels"][1:])
        want = float(torch.nn.functional.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum"))
        assert n == int((targets != IGNORE_INDEX).sum()) == e["num_supervised"]
        assert nll == pytest.approx(want, rel=TOL)
    assert got[0][1] < got[5][1]  # both assistant turns counted, longer answers more tokens


def test_packed_engine_on_an_unmerged_lora_model(toy):
    """A PEFT model is scored through its LoRA layers (the head/body split looks through the wrapper)."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    from tunelens.evaluate.logprob import continuation_logprobs

    model, tok = toy
    peft = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # LoRA B starts at zero: make the adapter change the function
    pairs = _pairs()[:10]
    with_lora = continuation_logprobs(peft, tok, pairs)
    _close(with_lora, continuation_logprobs(peft, tok, pairs, engine="full"))
    plain = continuation_logprobs(model, tok, pairs)
    assert max(abs(a[0] - b[0]) for a, b in zip(with_lora, plain)) > 0.01


def test_logprob_cache_skips_known_pairs_and_survives_a_torn_line(toy, tmp_path, monkeypatch):
    import tunelens.evaluate.logprob as lp
    from tunelens.evaluate.cache import LogprobCache

    model, tok = toy
    pairs = _pairs()
    calls = []
    real = lp._packed_scores
    monkeypatch.setattr(lp, "_packed_scores", lambda m, trees, n, **kw: calls.append(len(trees)) or real(m, trees, n, **kw))
    first = lp.continuation_logprobs(model, tok, pairs[:10], cache=LogprobCache(tmp_path, "fp"))
    assert calls == [2]
    with (tmp_path / "fp-logprobs-v1.jsonl").open("a") as fh:
        fh.write('{"key": "torn')  # an interrupted writer
    again = LogprobCache(tmp_path, "fp")
    both = lp.continuation_logprobs(model, tok, pairs, cache=again)
    assert calls == [2, 2]  # only the two new prompts' trees were computed
    assert again.hits == 10 and again.misses == 10
    assert both[:10] == first  # read back exactly (JSON keeps every bit of a float)
    _close(both, lp.continuation_logprobs(model, tok, pairs, engine="full"))
    other = LogprobCache(tmp_path, "another-model")
    lp.continuation_logprobs(model, tok, pairs[:5], cache=other)
    assert other.hits == 0 and calls[-1] == 1
    off = LogprobCache(tmp_path, "fp", enabled=False)
    lp.continuation_logprobs(model, tok, pairs[:5], cache=off)
    assert off.hits == 0 and calls[-1] == 1 and len(calls) == 4
    lines = (tmp_path / "fp-logprobs-v1.jsonl").read_text().splitlines()
    assert lines[10] == '{"key": "torn'  # the torn line stays on its own line; the next ones are whole
    assert len(lines) == 21 and all("value" in json.loads(ln) for ln in lines[:10] + lines[11:])
    assert len(LogprobCache(tmp_path, "fp")._entries) == 20


def test_sequence_nll_cache(toy, tmp_path):
    from tunelens.evaluate.cache import LogprobCache
    from tunelens.evaluate.logprob import sequence_nll
    from tunelens.train.masking import encode_for_sft

    model, tok = toy
    encs = [encode_for_sft(tok, [{"role": "user", "content": q}, {"role": "assistant", "content": "yes no"}], None)
            for q in ("why", "sky blue")]
    seqs = [(e["input_ids"], e["labels"]) for e in encs]
    cache = LogprobCache(tmp_path, "fp")
    first = sequence_nll(model, seqs, cache=cache)
    again = LogprobCache(tmp_path, "fp")
    assert sequence_nll(None, seqs, cache=again) == first  # no model needed: nothing is recomputed
    assert again.hits == 2


def test_the_runner_scores_an_adapter_on_merged_weights(tmp_path, tiny_model_path, shared_data, monkeypatch):
    """With no generative suite (so no hf backend to merge it), the log-prob suites still get the merged
    model: no unmerged LoRA matmuls, and the same loss as through the adapter."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    import tunelens.evaluate.logprob as lp
    from tunelens.evaluate import EvalConfig, evaluate

    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_model_path)),
                                LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    seen = []
    real = lp._packed_scores
    monkeypatch.setattr(lp, "_packed_scores", lambda m, *a, **kw: seen.append(m) or real(m, *a, **kw))
    config = EvalConfig(models=[{"spec": str(tmp_path / "adapter"), "label": "tuned"}], suites=["loss", "truthfulqa_mc"],
                        limit=4, output_dir=tmp_path / "out", cache_dir=tmp_path / "cache", data_dir=shared_data,
                        bootstrap_resamples=100)
    report = evaluate(config, progress=False)
    assert seen and all(not hasattr(m, "peft_config") for m in seen)
    assert not any("lora" in n for n, _ in seen[0].named_parameters())
    # the same loss through the unmerged adapter (merging rounds each weight once)
    from tunelens.evaluate.suites import all_suites
    from tunelens.evaluate.suites.base import SuiteContext
    from tunelens.models import load_model

    ctx = SuiteContext(config)
    suite = all_suites()["loss"]()
    items = suite.build(ctx)
    loaded = load_model(str(tmp_path / "adapter"))
    assert hasattr(loaded.model, "peft_config")
    direct = [sc["loss"] for _, sc, _ in suite.run(loaded, items, ctx, "tuned")]
    assert report["results"]["tuned"]["loss"]["loss"]["n"] == len(direct) == len(items)
    per_item = {s["item_id"]: s["scores"]["loss"] for s in map(json.loads, (tmp_path / "out" / "samples.jsonl").open())
                if s["suite"] == "loss"}
    assert [per_item[it.id] for it in items] == pytest.approx(direct, rel=1e-4)


def test_sequence_without_a_supervised_token_scores_zero_tokens(toy):
    from tunelens.evaluate.logprob import sequence_nll

    model, _ = toy
    got = sequence_nll(model, [([4, 5, 6], [-100, -100, -100]), ([4, 5, 6], [-100, 5, 6])])
    assert got[0] == (0.0, 0) and got[1][1] == 2 and got[1][0] > 0
    from tunelens.errors import TunelensError

    with pytest.raises(TunelensError, match="sequence 0: 3 ids but 2 labels"):
        sequence_nll(model, [([4, 5, 6], [-100, 5])])


def test_a_cached_pair_longer_than_max_tokens_is_still_left_out(toy, tmp_path):
    from tunelens.evaluate.cache import LogprobCache
    from tunelens.evaluate.logprob import continuation_logprobs

    model, tok = toy
    pairs = _pairs()[5:7]  # the long prompt: about 40 tokens
    first = continuation_logprobs(model, tok, pairs, cache=LogprobCache(tmp_path, "fp"))
    assert all(x is not None for x in first)
    again = LogprobCache(tmp_path, "fp")
    assert continuation_logprobs(model, tok, pairs, max_tokens=20, cache=again) == [None, None]
    assert again.hits == 0
