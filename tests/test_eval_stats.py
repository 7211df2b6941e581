"""Bootstrap CIs on synthetic data with a known effect: coverage, power, false-positive rate."""

import numpy as np
import pytest

from tunelens.evaluate.stats import mean_ci, paired_bootstrap, weighted_mean


def _paired(rng, n, p_a, effect):
    """Correlated pass/fail pairs: b passes where a does, plus extra wins with prob ``effect``."""
    a = (rng.random(n) < p_a).astype(float)
    flip = rng.random(n)
    b = a.copy()
    b[(a == 0) & (flip < effect)] = 1.0
    b[(a == 1) & (flip < 0.1)] = 0.0  # some losses too
    return a, b


def test_mean_ci_coverage_near_95_percent():
    rng = np.random.default_rng(1)
    true_p, covered, trials = 0.3, 0, 300
    for t in range(trials):
        x = (rng.random(200) < true_p).astype(float)
        lo, hi = mean_ci(x, n_resamples=1000, seed=t)
        covered += lo <= true_p <= hi
    assert 0.90 <= covered / trials <= 0.99


def test_paired_delta_coverage_and_power():
    rng = np.random.default_rng(2)
    n, p_a, effect = 300, 0.4, 0.3
    true_delta = (1 - p_a) * effect - p_a * 0.1  # expected wins minus expected losses per unit
    covered = detected = 0
    trials = 200
    for t in range(trials):
        a, b = _paired(rng, n, p_a, effect)
        res = paired_bootstrap(a, b, n_resamples=1000, seed=t)
        covered += res["ci"][0] <= true_delta <= res["ci"][1]
        detected += res["significant"] and res["delta"] > 0
    assert 0.90 <= covered / trials <= 0.99
    assert detected / trials > 0.95  # a real +0.14 effect on 300 items is found


def test_null_effect_is_rarely_flagged():
    rng = np.random.default_rng(3)
    flagged, trials = 0, 300
    for t in range(trials):
        a = (rng.random(150) < 0.5).astype(float)
        b = (rng.random(150) < 0.5).astype(float)
        flagged += paired_bootstrap(a, b, n_resamples=1000, seed=t)["significant"]
    assert flagged / trials < 0.10  # nominal 5%, with slack for the bootstrap and 300 trials


def test_wins_losses_ties_and_direction():
    a = [1, 1, 0, 0, 1]
    b = [1, 0, 1, 1, 1]
    res = paired_bootstrap(a, b, seed=0)
    assert (res["wins"], res["losses"], res["ties"]) == (2, 1, 2)
    assert res["delta"] == pytest.approx(0.2)
    lower = paired_bootstrap(a, b, seed=0, higher_is_better=False)
    assert (lower["wins"], lower["losses"]) == (1, 2)


def test_deterministic_for_a_seed_and_weighted():
    x = np.arange(20, dtype=float)
    assert mean_ci(x, seed=5) == mean_ci(x, seed=5)
    w = np.ones(20)
    w[0] = 1000  # a heavy unit pulls the weighted mean towards 0
    point = weighted_mean(x, w)
    assert point < 0.5
    lo, hi = mean_ci(x, w, seed=0)
    assert lo <= point <= hi and lo < mean_ci(x, seed=0)[0]
    assert mean_ci([1.0]) is None
    with pytest.raises(ValueError):
        paired_bootstrap([1, 0], [1])
