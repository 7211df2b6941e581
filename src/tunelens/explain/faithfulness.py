"""Is an attribution faithful? Comprehensiveness and sufficiency (DeYoung et al. 2020, ERASER).

With the response fixed, let L(prompt) be the summed log-probability of the response tokens.
For the top-k% prompt tokens by attribution (k = 5/10/20/50%, template tokens never deleted):

- comprehensiveness(k) = L(full) - L(prompt without the top-k%)   (higher = the tokens mattered)
- sufficiency(k)       = L(full) - L(prompt with only the top-k%)   (lower = they were enough)

Both are computed for ``n_random`` random selections of the same size; an attribution that does
not beat random on both is flagged ``better_than_random: false``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tunelens.errors import TunelensError
from tunelens.explain.attribution import Attribution
from tunelens.explain.scoring import frozen, response_logprobs


def _variant(input_ids: list[int], candidates: np.ndarray, chosen: np.ndarray, keep_only: bool) -> list[int]:
    chosen_set = set(int(i) for i in chosen)
    cand_set = set(int(i) for i in candidates)
    if keep_only:
        return [t for i, t in enumerate(input_ids) if i not in cand_set or i in chosen_set]
    return [t for i, t in enumerate(input_ids) if i not in chosen_set]


def faithfulness(
    model: Any,
    tokenizer: Any,
    attr: Attribution,
    ks: Sequence[float] = (0.05, 0.1, 0.2, 0.5),
    n_random: int = 8,
    seed: int = 0,
    *,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Comprehensiveness and sufficiency per k, against random selections of the same size."""
    if not attr.input_ids or not attr.output_ids:
        raise TunelensError("faithfulness needs the attribution's token ids (compute it with tunelens.explain.attribute)")
    if not ks or any(not 0 < k <= 1 for k in ks):
        raise TunelensError(f"faithfulness ks must be fractions in (0, 1], got {list(ks)}")
    if n_random < 1:
        raise TunelensError(f"n_random must be >= 1, got {n_random}")
    template = np.asarray(attr.template_mask, dtype=bool)
    candidates = np.flatnonzero(~template) if (~template).any() else np.arange(len(attr.input_ids))
    scores = np.asarray(attr.matrix, dtype=float).sum(0)[candidates]
    # Ties broken by position so results are deterministic.
    ranked = candidates[np.lexsort((candidates, -scores))]
    rng = np.random.default_rng(seed)
    variants: list[list[int]] = [list(attr.input_ids)]
    plan = []
    for k in ks:
        n = min(len(candidates), max(1, math.ceil(k * len(candidates))))
        top = ranked[:n]
        randoms = [rng.choice(candidates, size=n, replace=False) for _ in range(n_random)]
        entry = {"k": float(k), "n_tokens": int(n), "rows": {}}
        for name, keep_only in (("comprehensiveness", False), ("sufficiency", True)):
            entry["rows"][name] = len(variants)
            variants.append(_variant(attr.input_ids, candidates, top, keep_only))
            entry["rows"][name + "_random"] = list(range(len(variants), len(variants) + n_random))
            variants.extend(_variant(attr.input_ids, candidates, r, keep_only) for r in randoms)
        plan.append(entry)
    with frozen(model):
        totals = response_logprobs(model, variants, attr.output_ids, batch_size=batch_size).sum(1)
    full = float(totals[0])
    per_k = []
    for entry in plan:
        rows = entry["rows"]
        out = {"k": entry["k"], "n_tokens": entry["n_tokens"]}
        for name in ("comprehensiveness", "sufficiency"):
            rand = full - totals[rows[name + "_random"]]
            out[name] = float(full - totals[rows[name]])
            out[name + "_random"] = float(rand.mean())
            out[name + "_random_std"] = float(rand.std())
        per_k.append(out)
    comp_gain = float(np.mean([e["comprehensiveness"] - e["comprehensiveness_random"] for e in per_k]))
    suff_gain = float(np.mean([e["sufficiency_random"] - e["sufficiency"] for e in per_k]))
    better = comp_gain > 0 and suff_gain > 0
    if better:
        verdict = "better than random on comprehensiveness and sufficiency"
    else:
        failed = [n for n, g in (("comprehensiveness", comp_gain), ("sufficiency", suff_gain)) if g <= 0]
        verdict = f"NOT better than random on {' and '.join(failed)}: do not trust this explanation"
    return {
        "method": attr.method,
        "response_logprob": full,
        "n_candidate_tokens": int(len(candidates)),
        "n_random": n_random,
        "seed": seed,
        "per_k": per_k,
        "comprehensiveness_mean": float(np.mean([e["comprehensiveness"] for e in per_k])),
        "comprehensiveness_random_mean": float(np.mean([e["comprehensiveness_random"] for e in per_k])),
        "sufficiency_mean": float(np.mean([e["sufficiency"] for e in per_k])),
        "sufficiency_random_mean": float(np.mean([e["sufficiency_random"] for e in per_k])),
        "comprehensiveness_gain": comp_gain,
        "sufficiency_gain": suff_gain,
        "better_than_random": better,
        "verdict": verdict,
    }
