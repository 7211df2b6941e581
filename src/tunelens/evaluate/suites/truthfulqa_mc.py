"""TruthfulQA multiple choice (Lin et al. 2022), MC1 and MC2 by log-probability; no generation.

Data: ``truthfulqa_mc_task_v1.json`` (817 questions, the original release most published MC
results use; its ``mc1_targets`` has one true answer, ``mc2_targets`` one or more true and false
answers). The question is the user turn, rendered with the model's chat template and its
generation prompt, and each answer is scored as the assistant's reply: the summed log-probability
of its tokens (``tunelens.evaluate.logprob``, batched, one padded forward per batch). No few-shot
QA preamble is used (the lm-eval harness uses one, so absolute figures differ from theirs; base
and tuned are scored the same way).

- ``mc1``: 1 when the true answer's log-probability is strictly above every false one's.
- ``mc2``: the normalised probability mass on the true answers,
  ``sum_true exp(lp) / sum_all exp(lp)`` over ``mc2_targets`` (computed with log-sum-exp).
"""

from __future__ import annotations

import json
import math

from tunelens.errors import TunelensError
from tunelens.evaluate import datafiles as df
from tunelens.evaluate.suites.base import Item, Suite, SuiteContext, register, user

TRUTHFULQA_MC_FILE = "truthfulqa_mc_task_v1.json"
DEFAULT_LIMIT = 200


def _logsumexp(values: list[float]) -> float:
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def mc_scores(mc1: list[tuple[float, int]], mc2: list[tuple[float, int]]) -> dict[str, float]:
    """MC1 and MC2 from (log-prob, label 1 true / 0 false) per choice."""
    true1 = [lp for lp, y in mc1 if y == 1]
    false1 = [lp for lp, y in mc1 if y == 0]
    if len(true1) != 1 or not false1:
        raise TunelensError(f"mc1 needs one true and at least one false answer, got {len(true1)} true, {len(false1)} false")
    true2 = [lp for lp, y in mc2 if y == 1]
    if not true2 or len(true2) == len(mc2):
        raise TunelensError("mc2 needs true and false answers")
    return {"mc1": float(true1[0] > max(false1)), "mc2": math.exp(_logsumexp(true2) - _logsumexp([lp for lp, _ in mc2]))}


def _targets(row: dict, key: str, where: str) -> list[tuple[str, int]]:
    targets = row.get(key)
    if not isinstance(targets, dict) or not targets:
        raise TunelensError(f"{where}: no {key!r} object")
    return [(str(choice), int(label)) for choice, label in targets.items()]


@register
class TruthfulQAMCSuite(Suite):
    name = "truthfulqa_mc"
    order = 40
    metrics = ("mc1", "mc2")
    default = False
    generative = False
    continuations = True
    default_limit = DEFAULT_LIMIT

    def build(self, ctx: SuiteContext):
        path = df.data_file(TRUTHFULQA_MC_FILE, ctx.data_dir)
        rows = json.loads(path.read_text(encoding="utf-8"))
        items = []
        for i in self.subset(ctx, len(rows)):
            row, where = rows[i], f"{path}: question {i}"
            if not isinstance(row.get("question"), str):
                raise TunelensError(f"{where}: no question text")
            items.append(Item(self.name, f"truthfulqa:{i}", user(row["question"]),
                              reference={"mc1": _targets(row, "mc1_targets", where),
                                         "mc2": _targets(row, "mc2_targets", where)}))
        return items

    def run(self, loaded, items: list[Item], ctx: SuiteContext, label: str) -> list[tuple[Item, dict, dict]]:
        from tunelens.evaluate.logprob import suite_continuation_logprobs

        pairs, slots = [], []
        for item in items:
            for key in ("mc1", "mc2"):
                for choice, y in item.reference[key]:
                    pairs.append((item.prompt, choice))
                    slots.append((item.id, key, y))
        scored = suite_continuation_logprobs(loaded, pairs, ctx)
        per: dict[str, dict[str, list[tuple[float, int]]]] = {}
        bad: set[str] = set()
        for (item_id, key, y), res in zip(slots, scored):
            if res is None:
                bad.add(item_id)
                continue
            per.setdefault(item_id, {"mc1": [], "mc2": []})[key].append((res[0], y))
        out = []
        for item in items:
            if item.id in bad:
                ctx.skipped.append({"model": label, "suite": self.name, "item_id": item.id,
                                    "reason": f"a choice is longer than max_loss_tokens={ctx.config.max_loss_tokens}"})
                continue
            scores = mc_scores(per[item.id]["mc1"], per[item.id]["mc2"])
            out.append((item, scores, {"choice_logprobs": {k: [round(lp, 4) for lp, _ in v]
                                                            for k, v in per[item.id].items()}}))
        return out
