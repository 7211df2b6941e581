"""Robustness: IFEval prompts paraphrased and with a distractor; the accuracy drop against the original."""

from __future__ import annotations

import random

from tunelens.evaluate import ifeval, robustness
from tunelens.evaluate.suites.base import Item, Suite, register, user
from tunelens.evaluate.suites.ifeval import ifeval_rows


@register
class RobustnessSuite(Suite):
    name = "robustness"
    order = 70
    lower_is_better = frozenset({"drop_paraphrased", "drop_distractor"})
    VARIANTS = ("original", "paraphrased", "distractor")

    def build(self, ctx):
        rows = ifeval_rows(ctx)
        items = []
        for i in self.subset(ctx, len(rows)):
            row = rows[i]
            rng = random.Random(f"{ctx.config.seed}:{row['key']}")
            paraphrased, rewrites = robustness.paraphrase(row["prompt"], rng)
            prompts = {"original": row["prompt"], "paraphrased": paraphrased,
                       "distractor": robustness.with_distractor(row["prompt"], rng)}
            for variant in self.VARIANTS:
                items.append(Item(self.name, f"robustness:{row['key']}:{variant}", user(prompts[variant]),
                                  unit=f"ifeval:{row['key']}", variant=variant, reference=row,
                                  meta={"phrases_rewritten": rewrites} if variant == "paraphrased" else {}))
        return items

    def score(self, item, output, ctx):
        return {f"acc_{item.variant}": ifeval.score_item(item.reference, output)["prompt_level_strict_acc"]}

    def derived(self, unit_scores):
        drops: dict[str, dict[str, float]] = {"drop_paraphrased": {}, "drop_distractor": {}}
        for unit, scores in unit_scores.items():
            if "acc_original" not in scores:
                continue
            for variant in ("paraphrased", "distractor"):
                if f"acc_{variant}" in scores:
                    drops[f"drop_{variant}"][unit] = scores["acc_original"] - scores[f"acc_{variant}"]
        return drops
