"""SFT on the tiny model: outputs, EOS learning, the supervised head, length policy."""

from __future__ import annotations

import json

import pytest
import torch

from tunelens.records import make_conversation, write_jsonl
from tunelens.train import TrainConfig, train

from _numerics import answer_margins, assert_close_relative

QA = [
    ("What is the capital of France?", "Paris."),
    ("What colour is the sky?", "Blue."),
]


def write_sft(path, pairs, extra=()):
    rows = [make_conversation([{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                              source="test", source_file="inline", row=i, license="MIT")
            for i, (q, a) in enumerate(pairs)]
    write_jsonl(path, list(rows) + list(extra))
    return path


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_model_path):
    tmp = tmp_path_factory.mktemp("lora")
    long_answer = " ".join(["word"] * 80)
    data = write_sft(tmp / "d.jsonl", QA * 4 + [("Write many words.", long_answer)], extra=[
        make_conversation([{"role": "user", "content": "only a question"}], source="test", source_file="inline",
                          row=99, license="MIT")])
    cfg = TrainConfig(model=str(tiny_model_path), data=[str(data)], output_dir=str(tmp / "out"), max_steps=4,
                      save_steps=2, batch_size=4, max_length=64, merge=True, seed=1)
    return cfg, train(cfg, progress=False)


def test_lora_run_writes_the_documented_layout(lora_run, tiny_model_path):
    cfg, result = lora_run
    out = cfg.out
    for name in ("adapter/adapter_config.json", "adapter/tokenizer_config.json", "merged/config.json",
                 "checkpoints/checkpoint-2", "checkpoints/checkpoint-4", "metrics.jsonl", "loss_curve.png",
                 "config.yaml", "manifest.json", "train_summary.json", "dropped_examples.jsonl"):
        assert (out / name).exists(), name
    adapter_cfg = json.loads((out / "adapter/adapter_config.json").read_text())
    # never the local cache path: tiny-random has no hub id, tunelens rebuilds it (tests/test_models_portable.py)
    assert adapter_cfg["base_model_name_or_path"] == "tiny-random"
    assert (out / "adapter/tunelens_base.json").is_file() and (out / "merged/tunelens_base.json").is_file()
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all({"loss", "lr", "supervised_tokens"} <= r.keys() for r in rows)
    assert all("tokens_per_s" in r for r in rows[1:])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["precision"]["name"] == "fp32"  # CPU without native bf16
    assert manifest["seed"] == 1 and len(manifest["data"][0]["sha256"]) == 64
    assert {"torch", "transformers", "trl", "peft"} <= manifest["libraries"].keys()
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == result.steps == 4
    # 10 records: one has no assistant turn (dropped), the 80-word answer exceeds 64 tokens (truncated).
    assert (summary["examples_total"], summary["examples_used"]) == (10, 9)
    assert summary["examples_truncated"] == 1 and summary["examples_dropped"] == 1
    dropped = [json.loads(ln) for ln in (out / "dropped_examples.jsonl").read_text().splitlines()]
    assert dropped == [{"id": "test:99", "source_file": str(cfg.data[0]), "reason": "no assistant turn"}]


@pytest.mark.numeric
def test_adapter_and_merged_model_load_and_agree(lora_run, tiny_model_path):
    from transformers import AutoModelForCausalLM

    from tunelens.generate import GenerationParams, generate
    from tunelens.models import load_model

    cfg, _ = lora_run
    adapted = load_model(str(cfg.out / "adapter"))
    merged = AutoModelForCausalLM.from_pretrained(str(cfg.out / "merged"))
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_path))
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        a = adapted.model(input_ids=ids).logits
        m = merged(input_ids=ids).logits
        b = base(input_ids=ids).logits
    # Merging folds B@A*scale into the weights: W + s*B@A rounds once per entry (eps of |W|), and
    # the 64-wide matmuls after it add about sqrt(64) * eps of the logits' size: ~1e-6. Observed
    # 2.7e-7 of the logits' size; 1e-4 leaves room for other CPUs' blocking, and the adapter's
    # own effect (3% of the logits' size after these 4 steps) is 300x larger, so a merge that
    # dropped or doubled the update would fail.
    rel = 1e-4
    assert_close_relative(a, m, rel=rel, what="adapter vs merged logits")
    assert float((a - b).abs().max()) > 10 * rel * float(a.abs().max())
    res = generate(merged, adapted.tokenizer, [[{"role": "user", "content": "hi"}]],
                   GenerationParams(max_new_tokens=4))
    assert res[0].completion_tokens >= 1


@pytest.mark.numeric
def test_supervised_head_matches_full_logits_loss(tiny_model_path):
    """The fast path computes the same loss and gradients as full-vocabulary logits."""
    from transformers import AutoModelForCausalLM

    from tunelens.models import load_tokenizer
    from tunelens.train.masking import encode_for_sft
    from tunelens.train.trainer import SFTCollator, install_supervised_head

    tok = load_tokenizer(str(tiny_model_path))
    batch = SFTCollator(tok.pad_token_id)([encode_for_sft(tok, [{"role": "user", "content": q},
                                                                {"role": "assistant", "content": a}]) for q, a in QA])
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_path))

    def full_logits_grad(labels):
        model.zero_grad()
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                                                 ignore_index=-100, reduction="sum")
        loss.backward()
        return loss.detach(), model.model.layers[0].mlp.up_proj.weight.grad.clone()

    ref, ref_grad = full_logits_grad(batch["labels"])
    # What a masking bug looks like: one supervised label fewer (the last EOS).
    one_less = batch["labels"].clone()
    one_less[0, (one_less[0] != -100).nonzero()[-1]] = -100
    _, wrong_grad = full_logits_grad(one_less)

    model.zero_grad()
    assert install_supervised_head(model)
    fast = model(**batch, supervised_loss=True).loss
    fast.backward()
    fast_grad = model.model.layers[0].mlp.up_proj.weight.grad
    # The two paths multiply matrices of different shapes (all positions x 49k vocabulary vs the
    # supervised ones), so MKL blocks the reductions differently and the sums round differently:
    # observed up to 4.6e-6 of the gradient's norm and 5e-6 of its largest entry (AVX2 / one
    # thread / MKL_CBWR=COMPATIBLE; bit-equal on AVX-512). A random-walk bound for a 49,152-term
    # fp32 sum is sqrt(49152) * eps = 2.6e-5; we allow 1e-4 of the reference's size. Dropping a
    # single supervised label moves the gradient by 3e-3 of its norm, 30x more, so a masking
    # error still fails the test (checked below).
    rel = 1e-4
    # The loss is one scalar sum of six cross-entropies: rounding of a few ulps (1e-7 observed).
    assert_close_relative(fast, ref, rel=1e-5, what="loss")
    assert_close_relative(fast_grad, ref_grad, rel=rel, what="up_proj gradient")
    assert float((wrong_grad - ref_grad).norm()) > 10 * rel * float(ref_grad.norm())
    # Without the flag the forward is the original one (generation is unchanged).
    assert model(input_ids=batch["input_ids"]).logits.shape[-1] == model.config.vocab_size


@pytest.mark.numeric
def test_tiny_model_learns_to_stop(tmp_path, tiny_model_path):
    """pad == eos in SmolLM2's tokenizer: the EOS must still be a label, so the model learns to stop.

    Trained well past the point of learning (loss 0.005 measured against the 0.05 asserted), so
    every answer token and the EOS win by a wide margin: 6.4 nats or more measured on AVX-512,
    AVX2 and the portable kernels, against 2.0 required. A borderline run (30 steps at 3e-2 ended
    at loss 0.23 with the first answer token ahead by 0.07, and answered "Blue." to the capital
    question on Zen 3) would fail the margin check on every CPU instead of on some.
    """
    from tunelens.generate import GenerationParams, generate
    from tunelens.models import load_model

    data = write_sft(tmp_path / "d.jsonl", QA)
    cfg = TrainConfig(model=str(tiny_model_path), data=[str(data)], output_dir=str(tmp_path / "out"), peft="none",
                      max_steps=100, batch_size=2, learning_rate=3e-3, lr_scheduler="constant", save_steps=1000,
                      seed=0)
    result = train(cfg, progress=False)
    assert result.final_loss < 0.05
    loaded = load_model(str(cfg.out / "model"))
    for q, a in QA:
        margins = answer_margins(loaded.model, loaded.tokenizer,
                                 [{"role": "user", "content": q}, {"role": "assistant", "content": a}])
        assert len(margins) >= 2 and min(margins) > 2.0, (q, margins)  # answer tokens + EOS, all clear winners
    results = generate(loaded.model, loaded.tokenizer, [[{"role": "user", "content": q}] for q, _ in QA],
                       GenerationParams(max_new_tokens=20))
    for (_, answer), res in zip(QA, results):
        assert res.text == answer  # implied by the margins above: greedy follows the argmax
        assert res.finish_reason == "eos"
        assert res.completion_tokens < 20


