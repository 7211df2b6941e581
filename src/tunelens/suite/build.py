"""Turn family streams into the three splits.

Each family has its own seeded stream of unique instances, so the k-th instance of a family is
the same whatever ``n`` is asked for. A trained family's instance goes to train or test by a
hash of its prompt (by its group for safety, so test pairs are unseen topics): the splits stay
disjoint across calls with different ``n`` too, which is what lets evaluation draw a test set
of any size from the same seed without touching training data.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from typing import Any

from tunelens.errors import TunelensError
from tunelens.records import make_conversation
from tunelens.suite.checkers import CHECKERS, is_refusal
from tunelens.suite.families import FAMILIES, Family
from tunelens.suite.task import Task

SOURCE = "tunelens-suite"
LICENSE = "Apache-2.0"
SPLITS = ("train", "test", "heldout")
SHARES = {"test": 0.15, "heldout": 0.15}  # train gets the rest
TEST_PERCENT = 20  # of a trained family's instances (by prompt hash) reserved for test
SAFETY_TEST_GROUP_SHARE = 0.25
MAX_TRIES_PER_ITEM = 60


def split_sizes(n: int) -> dict[str, int]:
    if n < 3:
        raise TunelensError(f"suite size n={n} is too small: need at least 3 (one per split)")
    test = max(1, round(n * SHARES["test"]))
    heldout = max(1, round(n * SHARES["heldout"]))
    return {"train": n - test - heldout, "test": test, "heldout": heldout}


def _allocate(total: int, families: list[Family]) -> dict[str, int]:
    """Largest-remainder split of ``total`` over families by weight."""
    weights = sum(f.weight for f in families)
    exact = {f.name: total * f.weight / weights for f in families}
    out = {k: int(v) for k, v in exact.items()}
    rest = total - sum(out.values())
    for name in sorted(exact, key=lambda k: (-(exact[k] - out[k]), k))[:rest]:
        out[name] += 1
    return out


def _test_groups(seed: int, groups: list[str]) -> set[str]:
    order = sorted(groups)
    random.Random(f"{SOURCE}:{seed}:groups").shuffle(order)
    return set(order[: max(1, round(len(order) * SAFETY_TEST_GROUP_SHARE))])


def _is_test(seed: int, task: Task, prompt: str, test_groups: set[str]) -> bool:
    if task.group is not None:
        return task.group in test_groups
    digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < TEST_PERCENT


def _record(task: Task, family: Family, split: str, seed: int, k: int) -> dict[str, Any]:
    prompt, ispan, cspan = task.user_message()
    meta: dict[str, Any] = {
        "split": split,
        "family": family.name,
        "category": family.category,
        "template_id": task.template_id,
        "checker": task.checker,
        "checker_kwargs": task.checker_kwargs,
        "instruction_span": ispan,
        "context_span": cspan,
        **task.extra_meta,
    }
    if task.safety:
        meta["safety"] = task.safety
    tags = [f"family:{family.name}", f"category:{family.category}", f"checker:{task.checker}", f"split:{split}"]
    if task.safety:
        tags.append(f"safety:{task.safety}")
    rec = make_conversation(
        [{"role": "user", "content": prompt}, {"role": "assistant", "content": task.target}],
        source=SOURCE, source_file=f"{SOURCE}:seed={seed}", row=k, license=LICENSE, tags=tags, meta=meta,
    )
    rec["id"] = f"{SOURCE}:s{seed}:{family.name}:{k}"
    return rec


def _family_records(family: Family, seed: int, quotas: dict[str, int]) -> dict[str, list[dict]]:
    from tunelens.suite.words import words

    rng = random.Random(f"{SOURCE}:{seed}:{family.name}")
    test_groups = _test_groups(seed, [p["id"] for p in words()["safety_pairs"]])
    out: dict[str, list[dict]] = {s: [] for s in quotas}
    seen: set[str] = set()
    budget = MAX_TRIES_PER_ITEM * max(1, sum(quotas.values())) + 100
    for _ in range(budget):
        if all(len(out[s]) >= q for s, q in quotas.items()):
            return out
        task = family.make(rng)
        prompt = task.user_message()[0]
        if prompt in seen:
            continue
        k = len(seen)
        seen.add(prompt)
        if family.heldout:
            split = "heldout"
        else:
            split = "test" if _is_test(seed, task, prompt, test_groups) else "train"
        if split in out and len(out[split]) < quotas[split]:
            out[split].append(_record(task, family, split, seed, k))
    short = {s: f"{len(out[s])}/{q}" for s, q in quotas.items() if len(out[s]) < q}
    raise TunelensError(f"suite family {family.name!r} ran out of distinct instances ({short}); ask for a smaller n")


def generate_suite(n: int, seed: int = 0) -> dict[str, list[dict]]:
    """About ``n`` records split into train (70%), test (15%) and heldout (15%), deterministic for ``seed``."""
    sizes = split_sizes(n)
    trained = [f for f in FAMILIES.values() if not f.heldout]
    heldout = [f for f in FAMILIES.values() if f.heldout]
    quotas: dict[str, dict[str, int]] = {f.name: {} for f in FAMILIES.values()}
    for split, fams in (("train", trained), ("test", trained), ("heldout", heldout)):
        for name, q in _allocate(sizes[split], fams).items():
            quotas[name][split] = q
    splits: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for family in FAMILIES.values():
        for split, recs in _family_records(family, seed, quotas[family.name]).items():
            splits[split].extend(recs)
    for split in SPLITS:  # interleave families, deterministically
        random.Random(f"{SOURCE}:{seed}:order:{split}").shuffle(splits[split])
    return splits


def eval_items(n: int, seed: int = 0) -> list[dict]:
    """The evaluation records (test + heldout) of the suite of size ``n``."""
    s = generate_suite(n, seed)
    return s["test"] + s["heldout"]


def train_records(family: str, n: int, seed: int = 0) -> list[dict]:
    """The first ``n`` train-split records of the trained ``family`` in the suite of ``seed``.

    Each family's stream does not depend on the suite size, so these are the records that
    ``generate_suite(N, seed)["train"]`` holds for that family (its first ones, for any ``N``):
    training data, never an evaluation item. Few-shot exemplars are drawn from here.
    """
    if family not in FAMILIES:
        raise TunelensError(f"unknown suite family {family!r}; known: {', '.join(FAMILIES)}")
    fam = FAMILIES[family]
    if fam.heldout:
        raise TunelensError(f"suite family {family!r} is held out: it has no train split")
    return _family_records(fam, seed, {"train": n})["train"]


def score(record: dict, response: str) -> dict[str, float]:
    """Score a response to a suite record: ``pass`` (and ``refused`` for the safety family)."""
    meta = record.get("meta") or {}
    name = meta.get("checker")
    if name not in CHECKERS:
        raise TunelensError(f"record {record.get('id')!r}: unknown or missing checker {name!r} in meta.checker")
    out = {"pass": float(bool(CHECKERS[name](response, **meta.get("checker_kwargs", {}))))}
    if meta.get("safety"):
        out["refused"] = float(is_refusal(response))
    return out


def summarise(splits: dict[str, list[dict]]) -> dict[str, Any]:
    by_family = {s: dict(sorted(Counter(r["meta"]["family"] for r in recs).items())) for s, recs in splits.items()}
    return {
        "counts": {s: len(r) for s, r in splits.items()},
        "families": by_family,
        "templates": {s: len({r["meta"]["template_id"] for r in recs}) for s, recs in splits.items()},
        "safety": {s: dict(Counter(r["meta"]["safety"] for r in recs if r["meta"].get("safety"))) for s, recs in splits.items()},
    }
