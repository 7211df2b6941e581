"""Figures for instrument cards: confusion counts, precision/recall/F1, Wilson and bootstrap 95%
intervals, reliability bins and the Brier score. Plain Python (no numpy), seeded."""

from __future__ import annotations

import math
import random
from typing import Any


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def wilson(k: int, n: int, z: float = 1.96) -> list[float] | None:
    """Wilson 95% interval of the proportion k/n (None when n is 0)."""
    if n == 0:
        return None
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [round(max(0.0, c - h), 4), round(min(1.0, c + h), 4)]


def agreement_kappa(first: list[bool], second: list[bool]) -> tuple[float, float | None]:
    """Percent agreement of two labellers' binary labels, and Cohen's kappa (None when chance agreement is 1)."""
    n = len(first)
    if n == 0 or n != len(second):
        raise ValueError(f"two label lists of the same, non-zero length are needed (got {n} and {len(second)})")
    observed = sum(a == b for a, b in zip(first, second)) / n
    p1, p2 = sum(first) / n, sum(second) / n
    chance = p1 * p2 + (1 - p1) * (1 - p2)
    return round(observed, 4), (round((observed - chance) / (1 - chance), 4) if chance < 1 else None)


def pooled_rate(parts: dict[str, tuple[int, int]], side: str | None = None, bar: float | None = None) -> dict[str, Any]:
    """A rate pooled over several sources (name -> (k, n)), with its Wilson 95% interval, each source's rate, and,
    given a target (``side`` "at_least" or "at_most" ``bar``), the verdict: "shown" when the whole interval is on the
    target's side, "met as measured" when the pooled rate is, else "not met"."""
    k, n = sum(v[0] for v in parts.values()), sum(v[1] for v in parts.values())
    out: dict[str, Any] = {"k": k, "n": n, "rate": round(k / n, 4) if n else None, "wilson95": wilson(k, n),
                           "by_source": {s: {"k": a, "n": b, "rate": round(a / b, 4) if b else None, "wilson95": wilson(a, b)}
                                         for s, (a, b) in parts.items()}}
    if side is not None and n:
        if side not in ("at_least", "at_most"):
            raise ValueError(f"side must be 'at_least' or 'at_most', not {side!r}")
        lo, hi = out["wilson95"]
        rate = k / n
        if side == "at_least":
            out["verdict"] = "shown" if lo >= bar else "met as measured" if rate >= bar else "not met"
        else:
            out["verdict"] = "shown" if hi <= bar else "met as measured" if rate <= bar else "not met"
        out["target"] = f"{'>=' if side == 'at_least' else '<='} {bar}"
    return out


def binary_metrics(gold: list[bool], pred: list[bool]) -> dict[str, Any]:
    tp = sum(g and p for g, p in zip(gold, pred))
    fp = sum(p and not g for g, p in zip(gold, pred))
    fn = sum(g and not p for g, p in zip(gold, pred))
    tn = sum((not g) and (not p) for g, p in zip(gold, pred))
    p, r, f = _prf(tp, fp, fn)
    n_pos, n_neg = tp + fn, tn + fp
    return {"n": len(gold), "n_pos": n_pos, "n_neg": n_neg, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4),
            "specificity": round(tn / n_neg, 4) if n_neg else None,
            "accuracy": round((tp + tn) / len(gold), 4) if gold else None,
            "recall_wilson95": wilson(tp, n_pos), "specificity_wilson95": wilson(tn, n_neg)}


def bootstrap_ci(gold: list[bool], pred: list[bool], *, n_boot: int = 1000, seed: int = 0) -> dict[str, list[float]]:
    """Percentile bootstrap 95% intervals of precision, recall and F1 (rows resampled with replacement)."""
    rng = random.Random(seed)
    pairs = list(zip(gold, pred))
    if not pairs:
        return {}
    stats: dict[str, list[float]] = {"precision": [], "recall": [], "f1": []}
    for _ in range(n_boot):
        tp = fp = fn = 0
        for _ in range(len(pairs)):
            g, p = pairs[rng.randrange(len(pairs))]
            tp += g and p
            fp += p and not g
            fn += g and not p
        pr, rc, f = _prf(tp, fp, fn)
        stats["precision"].append(pr)
        stats["recall"].append(rc)
        stats["f1"].append(f)
    out = {}
    for k, v in stats.items():
        v.sort()
        out[k] = [round(v[int(0.025 * (len(v) - 1))], 4), round(v[int(0.975 * (len(v) - 1))], 4)]
    return out


def reliability(gold: list[bool], scores: list[float], bins: int = 10) -> dict[str, Any]:
    """Reliability bins (mean score vs observed positive rate) and the Brier score."""
    rows = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, s in enumerate(scores) if lo <= s < hi or (b == bins - 1 and s == 1.0)]
        if idx:
            rows.append({"bin": [lo, hi], "n": len(idx), "mean_score": round(sum(scores[i] for i in idx) / len(idx), 4),
                         "observed_rate": round(sum(gold[i] for i in idx) / len(idx), 4)})
    brier = sum((s - g) ** 2 for s, g in zip(scores, gold)) / len(gold) if gold else None
    ece = sum(r["n"] * abs(r["mean_score"] - r["observed_rate"]) for r in rows) / len(gold) if gold else None
    return {"bins": rows, "brier": round(brier, 4) if brier is not None else None,
            "ece": round(ece, 4) if ece is not None else None}


def _rate(flags: list[bool]) -> dict[str, Any]:
    k, n = sum(flags), len(flags)
    return {"k": k, "n": n, "rate": round(k / n, 4) if n else None, "wilson95": wilson(k, n) if n else None}


def agreement(families: list[str], gold: list[bool], pred: list[bool], *, what: str,
              base: str = "smollm2_base", tuned: str = "smollm2_tuned") -> dict[str, Any]:
    """The positive rate of ``base`` and ``tuned`` replies as labelled and as the instrument counts it,
    and tuned - base both ways (an instrument that errs differently on the two overstates or hides
    what tuning changed)."""
    out: dict[str, Any] = {}
    for fam in (base, tuned):
        idx = [i for i, f in enumerate(families) if f == fam]
        if idx:
            people, measured = _rate([gold[i] for i in idx]), _rate([pred[i] for i in idx])
            out[fam] = {"people": people, "instrument": measured,
                        "difference": round(measured["rate"] - people["rate"], 4), "target": 0.05}
    if base in out and tuned in out:
        b, t = out[base], out[tuned]
        out["tuned_minus_base"] = {
            "people": round(t["people"]["rate"] - b["people"]["rate"], 4),
            "instrument": round(t["instrument"]["rate"] - b["instrument"]["rate"], 4),
            "note": f"what tuning changed in the {what} rate, as labelled and as the instrument counts it"}
    return out


def family_operating_points(families: list[str], gold: list[bool], pred: list[bool],
                            merge: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Sensitivity and specificity per model family (and per merged group, e.g. every ``smollm2_*``
    family as ``smollm2``): an instrument's error differs between families, and a rate measured on one
    family's replies is corrected with that family's operating point where it was measured."""
    merge = merge if merge is not None else {"smollm2_base": "smollm2", "smollm2_tuned": "smollm2"}
    groups: dict[str, list[int]] = {}
    for i, fam in enumerate(families):
        groups.setdefault(fam, []).append(i)
        if fam in merge:
            groups.setdefault(merge[fam], []).append(i)
    out = {}
    for g, idx in sorted(groups.items()):
        m = binary_metrics([gold[i] for i in idx], [pred[i] for i in idx])
        out[g] = {"sensitivity": m["recall"] if m["n_pos"] else None, "specificity": m["specificity"] if m["n_neg"] else None,
                  "n_pos": m["n_pos"], "n_neg": m["n_neg"]}
    return out


def f1_best_threshold(gold: list[bool], scores: list[float]) -> tuple[float, float]:
    """(threshold, F1) at the threshold over ``scores`` that gives the best F1 against ``gold``."""
    from sklearn.metrics import precision_recall_curve

    p, r, t = precision_recall_curve(gold, scores)
    f1 = [2 * a * b / (a + b) if a + b else 0.0 for a, b in zip(p[:-1], r[:-1])]
    k = max(range(len(f1)), key=f1.__getitem__)
    return float(t[k]), float(f1[k])
