"""A rate measured by an imperfect instrument, and the same rate corrected for its error.

An instrument with sensitivity ``se`` and specificity ``sp`` that flags ``k`` of ``n`` items
observes ``p = k / n``, whose expectation is ``pi * se + (1 - pi) * (1 - sp)`` for a true rate
``pi``. The Rogan–Gladen estimator inverts that::

    pi_hat = (p + sp - 1) / (se + sp - 1)          clipped to [0, 1]

The denominator is Youden's J. When J is small the inversion divides by almost nothing and the
corrected rate means nothing; it is then reported as not shown (``corrected`` is None and
``message`` says why).

Intervals
---------
* ``raw.ci`` is the Wilson score interval of ``k / n`` (the sampling error of the items only).
* ``corrected.ci`` carries both the sampling error of the items and the instrument's own
  uncertainty, by Monte Carlo over the three binomial quantities (a parametric bootstrap with
  Jeffreys priors, so counts of 0 or n still give a spread): the observed rate is drawn from
  Beta(k + 1/2, n - k + 1/2), the sensitivity from Beta(tp + 1/2, n_pos - tp + 1/2) with
  ``tp = round(se * n_pos)``, the specificity likewise from the held-out negatives, and each draw
  is corrected and clipped. The interval is the central ``confidence`` share of those draws.
  Draws whose J is at or below zero have no correction; they are counted (``draws_without_j``),
  and when they are more than half the tail probability the upper or lower bound is not
  determined and the corrected rate is reported as not shown.
* Without ``n_pos``/``n_neg`` the sensitivity and specificity are taken as exact, and ``message``
  says the interval is too narrow by the instrument's unknown error.

The paired version (:func:`corrected_difference`) is for two models scored on the same items
(tuned − base). Items are resampled in pairs (a multinomial over the four agree/disagree cells),
the same draw of se/sp corrects both rates (the instrument's error is shared, which is what makes
the difference tighter than two independent corrections), and it assumes the error is the same
for both models' replies (non-differential misclassification) — a tuned model whose replies
fool the instrument more often breaks that assumption, and no correction can see it.

Floor: ``safety`` (numpy and the standard library).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from tunelens.errors import TunelensError

MIN_YOUDEN = 0.2  # below this J, a corrected rate is not shown
N_DRAWS = 20000


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``k / n``."""
    if n <= 0:
        raise TunelensError(f"a rate needs n > 0 items, got n={n}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _operating_point(card_or_operating_point: Mapping[str, Any]) -> tuple[dict[str, Any], str, str]:
    """(operating point, instrument name, task) from a card or a bare operating point."""
    src = card_or_operating_point
    if not isinstance(src, Mapping):
        raise TunelensError(f"a correction needs an instrument card or its operating_point, got {type(src).__name__}")
    op = src.get("operating_point", src)
    if not isinstance(op, Mapping):
        raise TunelensError("the card's operating_point is not an object")
    for key in ("sensitivity", "specificity"):
        value = op.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
            raise TunelensError(f"operating_point.{key} must be a number in [0, 1], got {value!r}")
    out: dict[str, Any] = {"sensitivity": float(op["sensitivity"]), "specificity": float(op["specificity"])}
    for key in ("n_pos", "n_neg"):
        value = op.get(key)
        if value is None:
            out[key] = None
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1 or int(value) != value:
            raise TunelensError(f"operating_point.{key} must be a positive whole count, got {value!r}")
        else:
            out[key] = int(value)
    name = str(src.get("name") or src.get("task") or op.get("name") or "instrument")
    task = str(src.get("task") or op.get("task") or "")
    return out, name, task


def _rg(p: Any, se: Any, sp: Any) -> Any:
    return (p + sp - 1.0) / (se + sp - 1.0)


def _draw_se_sp(op: dict[str, Any], rng: np.random.Generator, draws: int) -> tuple[np.ndarray, np.ndarray]:
    def one(rate: float, count: int | None) -> np.ndarray:
        if count is None:
            return np.full(draws, rate)
        hits = round(rate * count)
        return rng.beta(hits + 0.5, count - hits + 0.5, size=draws)

    return one(op["sensitivity"], op["n_pos"]), one(op["specificity"], op["n_neg"])


def _percentiles(values: np.ndarray, n_without: int, draws: int, confidence: float) -> tuple[list[float] | None, str]:
    """Central interval of the corrected draws, counting the draws without a correction as
    unknown on either side: if they could move a bound, the interval is not determined."""
    tail = (1 - confidence) / 2
    if n_without > tail * draws / 2:
        return None, (f"{n_without} of {draws} draws of the instrument's error had sensitivity + "
                      "specificity <= 1, too many for a corrected interval")
    lo, hi = np.quantile(values, [tail, 1 - tail])
    return [float(lo), float(hi)], ""


def _describe(op: dict[str, Any], name: str, task: str) -> str:
    held = ""
    if op["n_pos"] is not None and op["n_neg"] is not None:
        held = f" (held-out n={op['n_pos'] + op['n_neg']}: {op['n_pos']} positive, {op['n_neg']} negative)"
    label = name if not task or name == task else f"{name} ({task})"
    return (f"{label} instrument: sensitivity {op['sensitivity']:.2f}, "
            f"specificity {op['specificity']:.2f}{held}")


def _pct(x: float) -> str:
    return f"{100 * x:.0f}"


def corrected_rate(k: int, n: int, card_or_operating_point: Mapping[str, Any], *, confidence: float = 0.95,
                   seed: int = 0, min_youden: float = MIN_YOUDEN, draws: int = N_DRAWS) -> dict[str, Any]:
    """The raw rate ``k / n`` with its Wilson interval and the Rogan–Gladen corrected rate with an
    interval that includes the instrument's own error (see the module docstring).

    Returns ``{"instrument", "task", "k", "n", "confidence", "operating_point" (with "youden"),
    "raw": {"rate", "ci", "method"}, "corrected": {"rate", "ci", "method", "draws_without_j"} or
    None, "shown": bool, "message": str, "text": one line for a report}``.
    """
    if isinstance(k, bool) or isinstance(n, bool) or int(k) != k or int(n) != n:
        raise TunelensError(f"k and n must be whole counts, got k={k!r}, n={n!r}")
    k, n = int(k), int(n)
    if n <= 0 or not 0 <= k <= n:
        raise TunelensError(f"a rate needs 0 <= k <= n and n > 0, got k={k}, n={n}")
    if not 0.5 <= confidence < 1:
        raise TunelensError(f"confidence must be in [0.5, 1), got {confidence}")
    op, name, task = _operating_point(card_or_operating_point)
    se, sp = op["sensitivity"], op["specificity"]
    youden = se + sp - 1.0
    p = k / n
    raw_ci = wilson_interval(k, n, confidence)
    out: dict[str, Any] = {
        "instrument": name, "task": task, "k": k, "n": n, "confidence": confidence,
        "operating_point": {**op, "youden": round(youden, 6)},
        "raw": {"rate": p, "ci": [raw_ci[0], raw_ci[1]], "method": "wilson"},
        "corrected": None, "shown": False, "message": "",
    }
    messages = []
    if op["n_pos"] is None or op["n_neg"] is None:
        messages.append("the card gives no held-out counts (n_pos/n_neg): sensitivity and specificity "
                        "are taken as exact, so the corrected interval leaves out the instrument's own error")
    if youden < min_youden:
        messages.append(f"sensitivity + specificity - 1 = {youden:.2f} < {min_youden}: the instrument barely "
                        "separates the classes, a corrected rate would mean nothing and is not shown")
    else:
        rng = np.random.default_rng(seed)
        p_d = rng.beta(k + 0.5, n - k + 0.5, size=draws)
        se_d, sp_d = _draw_se_sp(op, rng, draws)
        j_d = se_d + sp_d - 1.0
        ok = j_d > 0
        values = np.clip(_rg(p_d[ok], se_d[ok], sp_d[ok]), 0.0, 1.0)
        ci, why = _percentiles(values, int((~ok).sum()), draws, confidence)
        if ci is None:
            messages.append(why)
        else:
            rate = float(min(1.0, max(0.0, _rg(p, se, sp))))
            out["corrected"] = {"rate": rate, "ci": ci,
                                "method": "rogan-gladen; interval by Monte Carlo over the observed rate and the "
                                          "held-out sensitivity/specificity (Jeffreys beta draws)",
                                "draws_without_j": int((~ok).sum())}
            out["shown"] = True
            if _rg(p, se, sp) < 0 or _rg(p, se, sp) > 1:
                messages.append("the observed rate lies outside what this instrument can produce; the corrected "
                                "rate is clipped to [0, 1]")
    out["message"] = "; ".join(messages)
    text = f"raw {_pct(p)}% [{_pct(raw_ci[0])}, {_pct(raw_ci[1])}]"
    if out["corrected"]:
        c = out["corrected"]
        text += f" · corrected {_pct(c['rate'])}% [{_pct(c['ci'][0])}, {_pct(c['ci'][1])}]"
    else:
        text += " · corrected: not shown"
    out["text"] = f"{text} · {_describe(op, name, task)}"
    return out


def _paired_cells(tuned: Any, base: Any) -> tuple[int, int, int, int]:
    """(both, tuned only, base only, neither) from two equal-length sequences of flags, or a
    mapping with those four counts under keys ``both``, ``tuned_only``, ``base_only``, ``neither``."""
    if isinstance(tuned, Mapping) and base is None:
        try:
            cells = tuple(int(tuned[key]) for key in ("both", "tuned_only", "base_only", "neither"))
        except KeyError as exc:
            raise TunelensError(f"paired counts need keys both, tuned_only, base_only, neither; missing {exc}") from exc
        if min(cells) < 0:
            raise TunelensError(f"paired counts must be >= 0, got {cells}")
        return cells  # type: ignore[return-value]
    if not isinstance(tuned, Sequence) or not isinstance(base, Sequence):
        raise TunelensError("a paired difference needs two sequences of flags (one per item) or a mapping of counts")
    if len(tuned) != len(base):
        raise TunelensError(f"paired flags must cover the same items: {len(tuned)} tuned vs {len(base)} base")
    t = np.asarray(tuned, dtype=bool)
    b = np.asarray(base, dtype=bool)
    return int((t & b).sum()), int((t & ~b).sum()), int((~t & b).sum()), int((~t & ~b).sum())


def corrected_difference(tuned: Any, base: Any, card_or_operating_point: Mapping[str, Any], *,
                         confidence: float = 0.95, seed: int = 0, min_youden: float = MIN_YOUDEN,
                         draws: int = N_DRAWS) -> dict[str, Any]:
    """Tuned − base rate on the same items, raw and corrected, with paired intervals.

    ``tuned`` and ``base`` are the instrument's positive flags per item (same order), or pass a
    mapping ``{"both", "tuned_only", "base_only", "neither"}`` as ``tuned`` and None as ``base``.
    Each rate is corrected and clipped to [0, 1] before the difference is taken. The raw interval
    resamples items only; the corrected one also draws the instrument's se/sp (one draw for both
    rates). Returns ``{"instrument", "task", "n", "confidence", "operating_point", "tuned",
    "base" (each {"k", "raw", "corrected"}), "raw": {"difference", "ci"}, "corrected":
    {"difference", "ci", ...} or None, "shown", "message", "text"}``.
    """
    cells = _paired_cells(tuned, base)
    n = sum(cells)
    if n <= 0:
        raise TunelensError("a paired difference needs at least one item")
    if not 0.5 <= confidence < 1:
        raise TunelensError(f"confidence must be in [0.5, 1), got {confidence}")
    op, name, task = _operating_point(card_or_operating_point)
    se, sp = op["sensitivity"], op["specificity"]
    youden = se + sp - 1.0
    k_t, k_b = cells[0] + cells[1], cells[0] + cells[2]
    p_t, p_b = k_t / n, k_b / n
    rng = np.random.default_rng(seed)
    # items resampled in pairs: a Dirichlet(cells + 1/2) draw of the four cell probabilities
    probs = rng.dirichlet(np.asarray(cells, dtype=float) + 0.5, size=draws)
    pt_d = probs[:, 0] + probs[:, 1]
    pb_d = probs[:, 0] + probs[:, 2]
    tail = (1 - confidence) / 2
    raw_lo, raw_hi = np.quantile(pt_d - pb_d, [tail, 1 - tail])
    out: dict[str, Any] = {
        "instrument": name, "task": task, "n": n, "confidence": confidence,
        "cells": dict(zip(("both", "tuned_only", "base_only", "neither"), cells)),
        "operating_point": {**op, "youden": round(youden, 6)},
        "tuned": {"k": k_t, "rate": p_t}, "base": {"k": k_b, "rate": p_b},
        "raw": {"difference": p_t - p_b, "ci": [float(raw_lo), float(raw_hi)],
                "method": "paired (Dirichlet over the four agree/disagree cells)"},
        "corrected": None, "shown": False, "message": "",
    }
    messages = []
    if op["n_pos"] is None or op["n_neg"] is None:
        messages.append("the card gives no held-out counts (n_pos/n_neg): sensitivity and specificity "
                        "are taken as exact, so the corrected interval leaves out the instrument's own error")
    if youden < min_youden:
        messages.append(f"sensitivity + specificity - 1 = {youden:.2f} < {min_youden}: a corrected difference "
                        "would mean nothing and is not shown")
    else:
        se_d, sp_d = _draw_se_sp(op, rng, draws)
        ok = se_d + sp_d - 1.0 > 0
        ct = np.clip(_rg(pt_d[ok], se_d[ok], sp_d[ok]), 0.0, 1.0)
        cb = np.clip(_rg(pb_d[ok], se_d[ok], sp_d[ok]), 0.0, 1.0)
        ci, why = _percentiles(ct - cb, int((~ok).sum()), draws, confidence)
        if ci is None:
            messages.append(why)
        else:
            rt = float(min(1.0, max(0.0, _rg(p_t, se, sp))))
            rb = float(min(1.0, max(0.0, _rg(p_b, se, sp))))
            out["tuned"]["corrected"] = rt
            out["base"]["corrected"] = rb
            out["corrected"] = {"difference": rt - rb, "ci": ci,
                                "method": "rogan-gladen on each rate; paired draws of items and one shared draw "
                                          "of sensitivity/specificity (Jeffreys beta)",
                                "draws_without_j": int((~ok).sum())}
            out["shown"] = True
    messages.append("assumes the instrument errs alike on both models' replies (non-differential misclassification)")
    out["message"] = "; ".join(messages)

    def signed(x: float) -> str:
        return f"{100 * x:+.0f}"

    text = f"raw {signed(p_t - p_b)} pts [{signed(raw_lo)}, {signed(raw_hi)}]"
    if out["corrected"]:
        c = out["corrected"]
        text += f" · corrected {signed(c['difference'])} pts [{signed(c['ci'][0])}, {signed(c['ci'][1])}]"
    else:
        text += " · corrected: not shown"
    out["text"] = f"{text} · {_describe(op, name, task)}"
    return out
