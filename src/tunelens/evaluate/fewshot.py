"""Few-shot variants of a suite, and what a correct answer costs with and without them (issue #4).

A k-shot item asks the same question as its zero-shot twin (same ``unit``), after k solved
exemplars given as earlier user/assistant turns: the standard few-shot format for chat models.
``compare`` sets k-shot prompting of one model against zero-shot prompting of another on the
items both answered, which is the inference-cost benefit claimed for instruction tuning.
"""

from __future__ import annotations

import random
from typing import Any, Protocol

from tunelens.errors import TunelensError
from tunelens.evaluate import stats


class Measured(Protocol):
    """What ``compare`` reads of one model's run (runner.ModelRun)."""

    label: str
    units: dict[str, dict[str, dict[str, float]]]  # suite -> metric -> unit -> score
    item_costs: dict[tuple[str, str, str], dict]  # (suite, unit, variant) -> tokens, seconds


class Resampling(Protocol):
    """What ``compare`` reads of the config (EvalConfig)."""

    bootstrap_resamples: int
    seed: int

POOL_MIN = 64  # train records per family that the exemplars are sampled from


def _user_text(record: dict) -> str:
    return next((m["content"] for m in record["messages"] if m["role"] == "user"), "")


def builtin_pools(families: set[str], k: int, seed: int, eval_prompts: set[str]) -> dict[str, list[dict]]:
    """Train-split records of each family, checked disjoint from the evaluation prompts."""
    from tunelens.suite import train_records

    size = max(POOL_MIN, 4 * k)
    pools: dict[str, list[dict]] = {}
    for family in sorted(families):
        pool = train_records(family, size, seed)
        for record in pool:
            roles = [m["role"] for m in record["messages"]]
            if roles != ["user", "assistant"]:
                raise TunelensError(f"suite train record {record['id']}: an exemplar needs one user and one "
                                    f"assistant message, got roles {roles}")
        # The suite's splits are disjoint by construction; a leak here would make few-shot an open-book test.
        leaked = [r["id"] for r in pool if _user_text(r) in eval_prompts]
        if leaked:
            raise TunelensError(f"few-shot exemplars of family {family!r} are also evaluation items: {', '.join(leaked[:5])}")
        pools[family] = pool
    return pools


def pick(pool: list[dict], k: int, seed: int, item_id: str) -> list[dict]:
    """k distinct exemplars for one item: seeded by the item, so each item's prompt is stable."""
    if len(pool) < k:
        raise TunelensError(f"few_shot.k={k} but only {len(pool)} train exemplars are available for {item_id}")
    return random.Random(f"{seed}:{item_id}").sample(pool, k)


def with_shots(question: list[dict[str, str]], exemplars: list[dict]) -> list[dict[str, str]]:
    """System messages first, then each exemplar as a user/assistant pair, then the question."""
    system = [m for m in question if m["role"] == "system"]
    turns: list[dict[str, str]] = []
    for ex in exemplars:
        user, assistant = ex["messages"]
        turns += [{"role": "user", "content": user["content"]}, {"role": "assistant", "content": assistant["content"]}]
    return system + turns + [m for m in question if m["role"] != "system"]


def cost_side(costs: list[dict], scores: list[float]) -> dict[str, Any]:
    """Accuracy and cost of one side over the paired items (scores are 0/1 per item)."""
    n = len(costs)
    correct = int(sum(scores))
    tokens = sum(c["tokens"] for c in costs)
    seconds = sum(c["seconds"] for c in costs)
    return {"accuracy": sum(scores) / n if n else None, "correct": correct, "n": n,
            "prompt_tokens": sum(c["prompt_tokens"] for c in costs),
            "completion_tokens": sum(c["completion_tokens"] for c in costs), "seconds": round(seconds, 3),
            "tokens_per_item": tokens / n if n else None,
            "tokens_per_correct": tokens / correct if correct else None,
            "seconds_per_correct": seconds / correct if correct else None,
            # Cached outputs carry the seconds of the run that generated them (maybe another load).
            "cached_items": sum(1 for c in costs if c.get("cached"))}


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def compare(few: Measured, zero: Measured, suite: str, metrics: tuple[str, str], k: int,
            config: Resampling) -> dict[str, Any] | None:
    """k-shot prompting of ``few`` against zero-shot prompting of ``zero`` on ``suite``.

    ``metrics`` names the per-item accuracy of the k-shot and the zero-shot variant. Only items
    both sides scored count (too-long prompts are skipped); ``None`` when there are none.
    """
    few_metric, zero_metric = metrics
    few_units = few.units.get(suite, {}).get(few_metric, {})
    zero_units = zero.units.get(suite, {}).get(zero_metric, {})
    common = sorted(set(few_units) & set(zero_units))
    if not common:
        return None
    variant = f"{k}shot"
    fs = cost_side([few.item_costs[(suite, u, variant)] for u in common], [few_units[u] for u in common])
    zs = cost_side([zero.item_costs[(suite, u, "0shot")] for u in common], [zero_units[u] for u in common])
    cmp = stats.paired_bootstrap([few_units[u] for u in common], [zero_units[u] for u in common],
                                 n_resamples=config.bootstrap_resamples, seed=config.seed)
    return {"suite": suite, "fewshot_model": few.label, "zeroshot_model": zero.label, "k": k,
            "metric_fewshot": few_metric, "metric_zeroshot": zero_metric,
            "unpaired_items": len(set(few_units) ^ set(zero_units)),
            "fewshot": fs, "zeroshot": zs,
            "token_ratio_per_item": _ratio(fs["tokens_per_item"], zs["tokens_per_item"]),
            "token_ratio_per_correct": _ratio(fs["tokens_per_correct"], zs["tokens_per_correct"]),
            "seconds_ratio_per_correct": _ratio(fs["seconds_per_correct"], zs["seconds_per_correct"]),
            # delta = zero-shot minus few-shot accuracy (b - a, as in every comparison)
            "accuracy_delta": cmp["delta"], "accuracy_delta_ci": cmp["ci"],
            # "Equal accuracy" is a measured claim: the paired CI on the difference contains 0.
            "equal_accuracy": bool(cmp["ci"] is not None and not cmp["significant"])}


def verdict(block: dict[str, Any]) -> str:
    """One honest phrase on the accuracy claim, for the console and report.html."""
    if not block["fewshot"]["correct"] and not block["zeroshot"]["correct"]:
        return "no correct answer on either side: the cost per correct answer is undefined"
    if block["accuracy_delta_ci"] is None:
        return "too few items for a CI on the accuracy difference"
    if block["equal_accuracy"]:
        return "equal accuracy (the 95% CI of the difference contains 0)"
    better = "zero-shot" if block["accuracy_delta"] > 0 else "few-shot"
    return f"accuracies differ ({better} is better; the 95% CI of the difference excludes 0)"
