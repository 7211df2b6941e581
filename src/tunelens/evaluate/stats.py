"""Bootstrap confidence intervals, vectorised with numpy and seeded.

``mean_ci`` gives a percentile interval for one model's metric; ``paired_bootstrap`` resamples
the same units for both models, so the per-unit correlation between them (the same prompt is
hard for both) narrows the interval on the difference, as a paired test should.
"""

from __future__ import annotations

import numpy as np

DEFAULT_RESAMPLES = 2000
_CHUNK = 256  # resamples per block: bounds memory at _CHUNK * n indices


def _weighted_means(values: np.ndarray, weights: np.ndarray | None, rng: np.random.Generator,
                    n_resamples: int) -> np.ndarray:
    n = len(values)
    out = np.empty(n_resamples)
    for start in range(0, n_resamples, _CHUNK):
        size = min(_CHUNK, n_resamples - start)
        idx = rng.integers(0, n, size=(size, n))
        if weights is None:
            out[start:start + size] = values[idx].mean(axis=1)
        else:
            w = weights[idx]
            out[start:start + size] = (values[idx] * w).sum(axis=1) / np.maximum(w.sum(axis=1), 1e-12)
    return out


def weighted_mean(values, weights=None) -> float:
    values = np.asarray(values, dtype=float)
    if weights is None:
        return float(values.mean())
    weights = np.asarray(weights, dtype=float)
    return float((values * weights).sum() / weights.sum())


def mean_ci(values, weights=None, *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
            level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap CI of the (weighted) mean; None with fewer than 2 units."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return None
    w = None if weights is None else np.asarray(weights, dtype=float)
    means = _weighted_means(values, w, np.random.default_rng(seed), n_resamples)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def paired_bootstrap(a, b, weights=None, *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                     level: float = 0.95, higher_is_better: bool = True) -> dict:
    """Delta ``mean(b) - mean(a)`` over paired units with a bootstrap CI, p-value and win counts."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same length, got {a.shape} and {b.shape}")
    diff = b - a
    w = None if weights is None else np.asarray(weights, dtype=float)
    delta = weighted_mean(diff, w) if len(diff) else float("nan")
    signed = diff if higher_is_better else -diff
    result = {
        "delta": delta, "ci": None, "p_value": None, "significant": False, "n": int(len(diff)),
        "wins": int((signed > 0).sum()), "losses": int((signed < 0).sum()), "ties": int((signed == 0).sum()),
    }
    if len(diff) < 2:
        return result
    deltas = _weighted_means(diff, w, np.random.default_rng(seed), n_resamples)
    tail = (1 - level) / 2 * 100
    lo, hi = (float(x) for x in np.percentile(deltas, [tail, 100 - tail]))
    # Two-sided bootstrap p-value: how often the resampled delta lands on the other side of 0.
    below, above = (deltas <= 0).sum(), (deltas >= 0).sum()
    p = min(1.0, 2 * (min(below, above) + 1) / (n_resamples + 1))
    result.update(ci=[lo, hi], p_value=float(p), significant=bool(lo > 0 or hi < 0))
    return result
