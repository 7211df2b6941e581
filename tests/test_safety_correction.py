"""Rogan–Gladen correction of a rate measured by an imperfect instrument, with its intervals."""

from __future__ import annotations

import numpy as np
import pytest

from tunelens.errors import TunelensError
from tunelens.safety.instruments.correction import corrected_difference, corrected_rate, wilson_interval

CARD = {"task": "refusal", "name": "refusal",
        "operating_point": {"sensitivity": 0.9, "specificity": 0.95, "n_pos": 400, "n_neg": 600}}


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(12, 100)  # textbook value: [0.0700, 0.1981]
    assert lo == pytest.approx(0.0700, abs=5e-4)
    assert hi == pytest.approx(0.1981, abs=5e-4)
    lo, hi = wilson_interval(0, 50)
    assert lo == 0.0 and 0.05 < hi < 0.09


def test_perfect_instrument_leaves_the_rate_unchanged():
    card = {"name": "perfect", "operating_point": {"sensitivity": 1.0, "specificity": 1.0, "n_pos": 5000, "n_neg": 5000}}
    out = corrected_rate(30, 200, card)
    assert out["shown"]
    assert out["corrected"]["rate"] == pytest.approx(0.15, rel=1e-12)
    lo, hi = out["corrected"]["ci"]
    rlo, rhi = out["raw"]["ci"]
    assert lo <= 0.15 <= hi
    # only the items' sampling error is left: close to the Wilson interval
    assert lo == pytest.approx(rlo, abs=0.01) and hi == pytest.approx(rhi, abs=0.01)


def test_rogan_gladen_point_estimate_and_text():
    out = corrected_rate(120, 400, CARD)  # p = 0.3 -> (0.3 + 0.95 - 1) / 0.85
    assert out["corrected"]["rate"] == pytest.approx(0.25 / 0.85, rel=1e-9)
    assert out["raw"]["rate"] == pytest.approx(0.3, rel=1e-12)
    lo, hi = out["corrected"]["ci"]
    assert lo < 0.25 / 0.85 < hi
    # the instrument's uncertainty widens the interval beyond the raw one's (scaled by 1/J)
    assert (hi - lo) > (out["raw"]["ci"][1] - out["raw"]["ci"][0])
    assert out["instrument"] == "refusal" and out["operating_point"]["youden"] == pytest.approx(0.85)
    assert out["text"].startswith("raw 30% [")
    assert "corrected 29% [" in out["text"]
    assert "sensitivity 0.90, specificity 0.95 (held-out n=1000" in out["text"]


def test_rate_below_the_false_positive_floor_clips_to_zero():
    out = corrected_rate(2, 200, CARD)  # 1% observed < 5% false-positive rate
    assert out["corrected"]["rate"] == 0.0
    assert out["corrected"]["ci"][0] == 0.0
    assert "clipped" in out["message"]


def test_uninformative_instrument_is_not_corrected():
    card = {"name": "coin", "operating_point": {"sensitivity": 0.55, "specificity": 0.55, "n_pos": 100, "n_neg": 100}}
    out = corrected_rate(50, 100, card)
    assert out["corrected"] is None and not out["shown"]
    assert "not shown" in out["message"] and "not shown" in out["text"]
    assert out["raw"]["rate"] == pytest.approx(0.5)


def test_small_validation_set_leaves_the_interval_undetermined():
    # J = 0.3 point estimate but only 4 + 4 held-out examples: many draws have J <= 0
    card = {"name": "tiny", "operating_point": {"sensitivity": 0.75, "specificity": 0.75, "n_pos": 4, "n_neg": 4}}
    out = corrected_rate(40, 100, card)
    assert out["corrected"] is None
    assert "draws" in out["message"]


def test_card_without_counts_is_said_to_understate_the_interval():
    out = corrected_rate(120, 400, {"sensitivity": 0.9, "specificity": 0.95})
    assert out["shown"]
    assert "n_pos/n_neg" in out["message"]
    with_counts = corrected_rate(120, 400, CARD)
    width = lambda o: o["corrected"]["ci"][1] - o["corrected"]["ci"][0]  # noqa: E731
    assert width(out) < width(with_counts)


@pytest.mark.parametrize("bad", [
    {"operating_point": {"sensitivity": 1.2, "specificity": 0.9}},
    {"operating_point": {"sensitivity": 0.9}},
    {"operating_point": {"sensitivity": 0.9, "specificity": 0.9, "n_pos": 0, "n_neg": 10}},
    "refusal",
])
def test_bad_cards_are_errors(bad):
    with pytest.raises(TunelensError):
        corrected_rate(1, 10, bad)


def test_bad_counts_are_errors():
    with pytest.raises(TunelensError):
        corrected_rate(11, 10, CARD)
    with pytest.raises(TunelensError):
        corrected_rate(0, 0, CARD)


def _simulated_card(rng, se, sp, n_pos, n_neg):
    return {"name": "sim", "operating_point": {"sensitivity": rng.binomial(n_pos, se) / n_pos,
                                                "specificity": rng.binomial(n_neg, sp) / n_neg,
                                                "n_pos": n_pos, "n_neg": n_neg}}


def test_simulated_noisy_instrument_recovers_the_true_rate():
    """A true rate measured by a classifier of known se/sp, whose card was itself estimated on a
    held-out set: the corrected interval covers the truth in most repetitions, the raw one rarely."""
    rng = np.random.default_rng(1)
    pi, se, sp, n = 0.2, 0.85, 0.9, 500
    reps, covered, raw_covered, errors = 120, 0, 0, []
    for rep in range(reps):
        card = _simulated_card(rng, se, sp, 300, 300)
        truth = rng.random(n) < pi
        flags = np.where(truth, rng.random(n) < se, rng.random(n) > sp)
        out = corrected_rate(int(flags.sum()), n, card, seed=rep, draws=4000)
        lo, hi = out["corrected"]["ci"]
        covered += lo <= pi <= hi
        rlo, rhi = out["raw"]["ci"]
        raw_covered += rlo <= pi <= rhi
        errors.append(out["corrected"]["rate"] - pi)
    assert covered / reps >= 0.88  # nominal 0.95; binomial sd over 120 reps is 0.02
    assert raw_covered / reps <= 0.5  # the raw rate is biased: E[p] = 0.25, not 0.2
    assert abs(float(np.mean(errors))) < 0.01


def test_paired_difference_known_cells_and_coverage():
    out = corrected_difference({"both": 50, "tuned_only": 10, "base_only": 40, "neither": 300}, None, CARD)
    assert out["n"] == 400
    assert out["raw"]["difference"] == pytest.approx((60 - 90) / 400)
    assert out["corrected"]["difference"] == pytest.approx((60 - 90) / 400 / 0.85, rel=1e-9)
    lo, hi = out["corrected"]["ci"]
    assert lo < out["corrected"]["difference"] < hi < 0
    assert "non-differential" in out["message"]
    assert out["text"].startswith("raw -8 pts [")

    rng = np.random.default_rng(2)
    pi_b, pi_t, se, sp, n = 0.30, 0.15, 0.85, 0.92, 400
    reps, covered = 100, 0
    for rep in range(reps):
        card = _simulated_card(rng, se, sp, 300, 300)
        u = rng.random(n)
        truth_b, truth_t = u < pi_b, u < pi_t  # tuning removed half the positives, same items
        flag = lambda t: np.where(t, rng.random(n) < se, rng.random(n) > sp)  # noqa: E731
        out = corrected_difference(list(flag(truth_t)), list(flag(truth_b)), card, seed=rep, draws=4000)
        lo, hi = out["corrected"]["ci"]
        covered += lo <= pi_t - pi_b <= hi
    assert covered / reps >= 0.87


def test_paired_flags_must_match():
    with pytest.raises(TunelensError, match="same items"):
        corrected_difference([True, False], [True], CARD)
