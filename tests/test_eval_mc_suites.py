"""Multiple-choice scoring by log-probability (TruthfulQA MC1/MC2, BBQ) and the BBQ bias score."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from _toy import toy_model, word_tokenizer

WORDS = "yes no maybe why sky blue".split()


@pytest.fixture(scope="module")
def planted():
    """A toy Llama whose next-token distribution is fixed (zero LM-head weights, a planted bias):
    log P(token) = bias[token] - logsumexp(bias), whatever the context."""
    import torch

    tok = word_tokenizer(WORDS)
    model = toy_model(tok)
    head = torch.nn.Linear(model.config.hidden_size, len(tok), bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[tok.convert_tokens_to_ids("yes")] = 3.0
        head.bias[tok.convert_tokens_to_ids("maybe")] = 1.0
    model.lm_head = head
    logp = torch.log_softmax(head.bias.detach(), dim=-1)
    return SimpleNamespace(model=model, tokenizer=tok, lp=lambda w: float(logp[tok.convert_tokens_to_ids(w)]))


def test_continuation_logprob_is_the_sum_over_its_tokens(planted):
    from tunelens.evaluate.logprob import continuation_logprobs

    prompt = [{"role": "user", "content": "why sky"}]
    got = continuation_logprobs(planted.model, planted.tokenizer, [(prompt, "yes"), (prompt, "no maybe"), (prompt, "yes yes")])
    assert got[0][1] == 1 and got[1][1] == 2 and got[2][1] == 2
    assert got[0][0] == pytest.approx(planted.lp("yes"), rel=1e-5)
    assert got[1][0] == pytest.approx(planted.lp("no") + planted.lp("maybe"), rel=1e-5)
    assert got[2][0] == pytest.approx(2 * planted.lp("yes"), rel=1e-5)


def test_shared_prefix_scores_equal_full_sequences():
    from tunelens.evaluate.logprob import continuation_logprobs

    tok = word_tokenizer(WORDS)
    model = toy_model(tok, seed=3)  # context-dependent: the cache must be used right
    pairs = [([{"role": "user", "content": q}], c) for q in ("why sky", "sky blue why")
             for c in ("yes", "no maybe blue", "maybe", "blue sky yes no")]
    shared = continuation_logprobs(model, tok, pairs, batch_size=3)
    full = continuation_logprobs(model, tok, pairs, batch_size=3, engine="full")
    for (a, na), (b, nb) in zip(shared, full):
        assert na == nb
        assert a == pytest.approx(b, rel=1e-4, abs=1e-4)
    assert len({round(s[0], 3) for s in shared[:4]} | {round(s[0], 3) for s in shared[4:]}) > 4  # not all the same


def test_truthfulqa_mc1_mc2_on_a_planted_model(planted):
    from tunelens.evaluate.suites.base import Item
    from tunelens.evaluate.suites.truthfulqa_mc import TruthfulQAMCSuite

    ref = {"mc1": [("yes", 1), ("no", 0), ("maybe", 0)], "mc2": [("yes", 1), ("yes yes", 1), ("no", 0), ("maybe", 0)]}
    wrong = {"mc1": [("no", 1), ("yes", 0)], "mc2": [("no", 1), ("maybe", 0)]}
    items = [Item("truthfulqa_mc", "q1", [{"role": "user", "content": "why"}], reference=ref),
             Item("truthfulqa_mc", "q2", [{"role": "user", "content": "sky"}], reference=wrong)]
    ctx = SimpleNamespace(config=SimpleNamespace(generation=SimpleNamespace(batch_size=4), max_loss_tokens=64), skipped=[])
    out = {item.id: scores for item, scores, _ in TruthfulQAMCSuite().run(planted, items, ctx, "m")}
    assert out["q1"]["mc1"] == 1.0 and out["q2"]["mc1"] == 0.0
    p = {w: math.exp(planted.lp(w)) for w in ("yes", "no", "maybe")}
    true_mass = p["yes"] + p["yes"] ** 2
    assert out["q1"]["mc2"] == pytest.approx(true_mass / (true_mass + p["no"] + p["maybe"]), rel=1e-5)
    assert out["q2"]["mc2"] == pytest.approx(p["no"] / (p["no"] + p["maybe"]), rel=1e-5)
    assert 0.0 < out["q2"]["mc2"] < 0.5 < out["q1"]["mc2"] < 1.0


def test_mc_scores_reject_malformed_targets():
    from tunelens.errors import TunelensError
    from tunelens.evaluate.suites.truthfulqa_mc import mc_scores

    with pytest.raises(TunelensError, match="one true"):
        mc_scores([(-1.0, 1), (-2.0, 1)], [(-1.0, 1), (-2.0, 0)])
    with pytest.raises(TunelensError, match="true and false"):
        mc_scores([(-1.0, 1), (-2.0, 0)], [(-1.0, 1)])
    # a tie is not a correct MC1 answer
    assert mc_scores([(-1.0, 1), (-1.0, 0)], [(-1.0, 1), (-1.0, 0)]) == {"mc1": 0.0, "mc2": pytest.approx(0.5)}


ROW = {"question_polarity": "neg", "context_condition": "ambig", "label": 2,
       "answer_info": {"ans0": ["grandfather", "old"], "ans1": ["grandson", "nonOld"], "ans2": ["Can't be determined", "unknown"]},
       "additional_metadata": {"stereotyped_groups": ["old"]}}


def test_bbq_target_and_biased_answer_from_the_row_fields():
    from tunelens.evaluate.suites.bbq import biased_answer, target_answer

    assert target_answer(ROW) == (0, 2, "")
    assert biased_answer(ROW, 0, 2) == 0  # negative question: the stereotyped group is the biased answer
    assert biased_answer({**ROW, "question_polarity": "nonneg"}, 0, 2) == 1  # non-negative: the other group
    target, _, why = target_answer({**ROW, "additional_metadata": {"stereotyped_groups": ["young"]}})
    assert target is None and "stereotyped_groups" in why


def test_bbq_bias_scores_on_a_hand_made_example():
    from tunelens.evaluate.suites.bbq import bias_scores

    # 4 disambiguated items, all answered with a group, 3 of them the biased one: s_DIS = 2 * 3/4 - 1 = 0.5.
    # 4 ambiguous items: 2 correct ("unknown"), 2 answered with a group, both biased:
    # s = 2 * 2/2 - 1 = 1, accuracy 0.5, s_AMB = (1 - 0.5) * 1 = 0.5.
    cols = {"_ambig":       np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=float),
            "_correct":     np.array([1, 0, 0, 0, 1, 1, 0, 0], dtype=float),
            "_non_unknown": np.array([1, 1, 1, 1, 0, 0, 1, 1], dtype=float),
            "_biased":      np.array([0, 1, 1, 1, 0, 0, 1, 1], dtype=float)}
    s_amb, s_dis = bias_scores(cols)
    assert s_dis == pytest.approx(0.5)
    assert s_amb == pytest.approx(0.5)
    # counter-stereotypical answers give a negative score; a mask picks a subset (one category)
    flipped = {**cols, "_biased": np.array([0, 0, 0, 1, 0, 0, 0, 0], dtype=float)}
    assert bias_scores(flipped)[1] == pytest.approx(2 * 1 / 4 - 1)
    mask = np.array([1, 1, 0, 0, 1, 1, 0, 0], dtype=float)
    s_amb_m, s_dis_m = bias_scores(cols, mask)
    assert s_dis_m == pytest.approx(0.0)  # items 0 (not biased) and 1 (biased)
    assert np.isnan(s_amb_m)  # no ambiguous item of the mask answered with a group: undefined, not 0


def test_bbq_statistics_are_bootstrapped_and_paired():
    from tunelens.evaluate import stats
    from tunelens.evaluate.suites.bbq import bias_scores

    rng = np.random.default_rng(0)
    n = 200
    ambig = (np.arange(n) % 2).astype(float)
    base = {"_ambig": ambig, "_correct": np.ones(n), "_non_unknown": np.ones(n), "_biased": (rng.random(n) < 0.5).astype(float)}
    tuned = {**base, "_biased": np.maximum(base["_biased"], (rng.random(n) < 0.6).astype(float))}  # more biased answers
    fn = lambda c: bias_scores(c)[1]  # noqa: E731
    single = stats.statistic_ci(base, fn, n_resamples=500, seed=0)
    assert single["ci"][0] <= single["value"] <= single["ci"][1]
    diff = stats.paired_statistic(base, tuned, fn, n_resamples=500, seed=0, higher_is_better=False)
    assert diff["delta"] > 0 and diff["significant"] and diff["ci"][0] > 0
