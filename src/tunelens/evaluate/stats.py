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


def _resampled(columns: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in columns.items()}


def statistic_ci(columns: dict, fn, *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                 level: float = 0.95) -> dict:
    """A statistic that is not a mean (``fn`` reduces the last axis of every column, e.g. a ratio of
    counts) with a percentile bootstrap CI over items; NaN resamples (an empty denominator) are left out."""
    cols = {k: np.asarray(v, dtype=float) for k, v in columns.items()}
    n = len(next(iter(cols.values()))) if cols else 0
    value = float(fn(cols)) if n else float("nan")
    out = {"value": None if np.isnan(value) else value, "ci": None, "n": n}
    if n < 2:
        return out
    rng = np.random.default_rng(seed)
    draws = []
    for start in range(0, n_resamples, _CHUNK):
        idx = rng.integers(0, n, size=(min(_CHUNK, n_resamples - start), n))
        draws.append(np.asarray(fn(_resampled(cols, idx)), dtype=float))
    draws = np.concatenate(draws)
    draws = draws[~np.isnan(draws)]
    if len(draws) >= n_resamples // 2:
        tail = (1 - level) / 2 * 100
        lo, hi = np.percentile(draws, [tail, 100 - tail])
        out["ci"] = [float(lo), float(hi)]
    return out


def paired_statistic(columns_a: dict, columns_b: dict, fn, *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                     level: float = 0.95, higher_is_better: bool = True) -> dict:
    """Delta ``fn(b) - fn(a)`` over the same items (resampled together) with a bootstrap CI and p-value."""
    a = {k: np.asarray(v, dtype=float) for k, v in columns_a.items()}
    b = {k: np.asarray(v, dtype=float) for k, v in columns_b.items()}
    n = len(next(iter(a.values()))) if a else 0
    delta = float(fn(b) - fn(a)) if n else float("nan")
    result = {"delta": None if np.isnan(delta) else delta, "ci": None, "p_value": None, "significant": False, "n": n,
              "wins": None, "losses": None, "ties": None}
    if n < 2:
        return result
    rng = np.random.default_rng(seed)
    draws = []
    for start in range(0, n_resamples, _CHUNK):
        idx = rng.integers(0, n, size=(min(_CHUNK, n_resamples - start), n))
        draws.append(np.asarray(fn(_resampled(b, idx)) - fn(_resampled(a, idx)), dtype=float))
    deltas = np.concatenate(draws)
    deltas = deltas[~np.isnan(deltas)]
    if len(deltas) < n_resamples // 2:
        return result
    tail = (1 - level) / 2 * 100
    lo, hi = (float(x) for x in np.percentile(deltas, [tail, 100 - tail]))
    below, above = (deltas <= 0).sum(), (deltas >= 0).sum()
    p = min(1.0, 2 * (min(below, above) + 1) / (len(deltas) + 1))
    result.update(ci=[lo, hi], p_value=float(p), significant=bool(lo > 0 or hi < 0))
    return result
