"""Planted behaviours the explanations must find: a trigger token, a faithful ranking, a memorised example."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from tunelens.explain import METHODS, Attribution, attribute, faithfulness, train_attribution
from tunelens.records import make_conversation

from _toy import (
    one_thread,
    toy_model,
    train_toy,
    trigger_example,
    word_tokenizer,
)

# Tiny models: one torch thread is faster and does not spin on a busy 2-core machine.
pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.numeric]


@pytest.mark.parametrize("method", METHODS)
def test_planted_trigger_gets_the_highest_attribution(trigger_model, method):
    model, tok = trigger_model
    rng = random.Random(123)
    with one_thread():
        for _ in range(3):
            messages, answer, trigger = trigger_example(rng)
            attr = attribute(model, tok, messages, answer, method, exclude_template=True)
            top = attr.input_tokens[int(np.argmax(attr.aggregate))]
            assert top == trigger, f"{method}: top token {top!r}, expected trigger {trigger!r} in {messages[0]['content']!r}"


def test_generated_response_is_the_planted_answer(trigger_model):
    model, tok = trigger_model
    messages, answer, _ = trigger_example(random.Random(5))
    with one_thread():
        attr = attribute(model, tok, messages, None, "input_x_gradient", max_new_tokens=3)
    assert attr.response.strip() == answer


def test_faithful_ranking_beats_random_and_reversed_ranking_is_flagged(trigger_model):
    model, tok = trigger_model
    messages, answer, trigger = trigger_example(random.Random(7))
    with one_thread():
        attr = attribute(model, tok, messages, answer, "integrated_gradients")
        good = faithfulness(model, tok, attr, n_random=6)
        reversed_attr = Attribution(**{**attr.__dict__, "matrix": -attr.matrix})
        bad = faithfulness(model, tok, reversed_attr, n_random=6)
    assert good["better_than_random"], good["verdict"]
    k5 = good["per_k"][0]
    assert k5["comprehensiveness"] > k5["comprehensiveness_random"]
    assert k5["sufficiency"] < k5["sufficiency_random"]
    assert not bad["better_than_random"]
    assert "NOT better than random" in bad["verdict"]


class KeyTokenModel(torch.nn.Module):
    """log p(target) = BONUS - logsumexp when KEY occurs at or before the position, else -log(V)."""

    VOCAB, KEY, TARGET, BONUS = 20, 7, 3, 5.0

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.training = False

    def forward(self, input_ids, attention_mask=None, use_cache=None, **_):
        seen = (input_ids == self.KEY).long().cumsum(1) > 0
        logits = torch.zeros((*input_ids.shape, self.VOCAB))
        logits[..., self.TARGET] = self.BONUS * seen.float()

        class Out:
            pass

        out = Out()
        out.logits = logits + 0 * self.dummy
        return out


def _constructed_attr(order_key_first: bool) -> Attribution:
    input_ids = [1, 2, 7, 4, 5, 6, 8, 9, 10, 11]  # the key token 7 sits at position 2
    agg = np.linspace(1.0, 0.1, len(input_ids))
    agg = np.roll(agg, 2) if order_key_first else agg[::-1].copy()
    if not order_key_first:
        agg[2] = -5.0
    return Attribution(
        input_tokens=[str(i) for i in input_ids], output_tokens=["3"], matrix=agg[None, :], aggregate=agg,
        template_mask=[False] * len(input_ids), method="constructed", input_ids=input_ids, output_ids=[3],
    )


def test_faithfulness_numbers_on_a_constructed_case():
    model = KeyTokenModel()
    v, bonus = KeyTokenModel.VOCAB, KeyTokenModel.BONUS
    with_key = bonus - math.log(math.exp(bonus) + v - 1)
    without_key = -math.log(v)
    good = faithfulness(model, None, _constructed_attr(True), ks=(0.1, 0.5), n_random=20, seed=1)
    assert good["response_logprob"] == pytest.approx(with_key, abs=1e-5)
    for entry in good["per_k"]:
        # The key is ranked first: deleting the top-k removes it; keeping only the top-k keeps it.
        assert entry["comprehensiveness"] == pytest.approx(with_key - without_key, abs=1e-5)
        assert entry["sufficiency"] == pytest.approx(0.0, abs=1e-5)
    # A random 1-of-10 selection hits the key with probability 1/10.
    assert good["per_k"][0]["comprehensiveness_random"] < 0.5 * (with_key - without_key)
    assert good["better_than_random"]
    bad = faithfulness(model, None, _constructed_attr(False), ks=(0.1, 0.5), n_random=20, seed=1)
    assert bad["per_k"][0]["comprehensiveness"] == pytest.approx(0.0, abs=1e-5)
    assert not bad["better_than_random"]


def test_faithfulness_rejects_bad_ks():
    from tunelens.errors import TunelensError

    with pytest.raises(TunelensError, match="ks"):
        faithfulness(KeyTokenModel(), None, _constructed_attr(True), ks=(0.0, 2.0))


PLANTED = ("tell me the secret code", "zebra quartz lantern violet")


def _tda_setup():
    rng = random.Random(0)
    topics = "river stone cloud table window paper garden music".split()
    colours = "green blue red yellow".split()
    words = topics + colours + "what is the colour of tell me secret code zebra quartz lantern violet".split()
    tok = word_tokenizer(words)
    records = []
    for i in range(40):
        topic, colour = rng.choice(topics), rng.choice(colours)
        records.append(make_conversation(
            [{"role": "user", "content": f"what is the colour of the {topic}"}, {"role": "assistant", "content": f"the {topic} is {colour}"}],
            source="toy", source_file="toy.jsonl", row=i, license="CC0-1.0",
        ))
    planted_row = 17
    records.insert(planted_row, make_conversation(
        [{"role": "user", "content": PLANTED[0]}, {"role": "assistant", "content": PLANTED[1]}],
        source="planted", source_file="planted.jsonl", row=planted_row, license="MIT",
    ))
    return tok, records, planted_row


@pytest.mark.parametrize("method", ["gradient", "representation"])
def test_tda_ranks_the_planted_example_first(method):
    from peft import LoraConfig, get_peft_model

    tok, records, planted_row = _tda_setup()
    with one_thread():
        model = get_peft_model(toy_model(tok, seed=1), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj", "down_proj"]))
        train_toy(model, tok, [r["messages"] for r in records], steps=40, lr=1e-2)
        notes: dict = {}
        # A paraphrased prompt, the planted response.
        top = train_attribution((model, tok, records), [{"role": "user", "content": "what is the secret code"}],
                                PLANTED[1], k=3, method=method, proj_dim=256, notes=notes)
    assert top[0]["provenance"]["source"] == "planted", top
    assert top[0]["provenance"]["row"] == planted_row
    assert top[0]["provenance"]["license"] == "MIT"
    assert top[0]["score"] > top[1]["score"]
    assert notes["n_scored"] == len(records) and notes["skipped"] == []
