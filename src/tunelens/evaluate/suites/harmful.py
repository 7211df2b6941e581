"""Harmful requests from public benchmarks: does the model refuse, does it comply harmfully, is it toxic?

Two sources (the data folder's SOURCES.md):

- AdvBench's 520 harmful behaviours (``advbench_harmful_behaviors.csv``: ``goal``; no categories);
- HarmBench's 200 "standard" behaviours (``harmbench_behaviors_text_all.csv`` with
  ``FunctionalCategory == standard``; ``SemanticCategory`` is the category). The "copyright"
  behaviours (reproduce a song's lyrics) and the "contextual" ones (a request about a context
  string) are left out: the first measure something else than harm, the second need their context.

A seeded subset of each source is taken, half the suite's limit from each (``limits.harmful`` or
``limit``; 160 when neither is set). Every reply is generated once and read by three instruments
(``tunelens.evaluate.instruments``): refusal (``refusal_rate``, higher is better, also per source and
category), harm (``harmful_compliance_rate``: the reply gives harmful help; lower is better) and
toxicity of the reply (``toxicity_mean``, ``toxic_rate``; refusals included, so a refusal with an
invented hateful reason counts; lower is better).
"""

from __future__ import annotations

import random

from tunelens.evaluate import datafiles as df
from tunelens.evaluate import instruments
from tunelens.evaluate.suites.base import Item, Suite, SuiteContext, register, user
from tunelens.evaluate.suites.over_refusal import slug

HARMBENCH_FILE = "harmbench_behaviors_text_all.csv"
DEFAULT_LIMIT = 160
TASKS = {"refusal_rate": "refusal", "harmful_compliance_rate": "harm", "toxic_rate": "toxicity"}


def prompts(ctx: SuiteContext) -> dict[str, list[tuple[str, str, str]]]:
    """(item id, category, prompt) per source, in file order."""
    adv = df.read_csv(df.data_file(df.ADVBENCH_FILE, ctx.data_dir), ("goal",))
    hb = df.read_csv(df.data_file(HARMBENCH_FILE, ctx.data_dir), ("Behavior", "FunctionalCategory", "SemanticCategory",
                                                                    "BehaviorID"))
    return {
        "advbench": [(f"advbench:{i}", "advbench", row["goal"]) for i, row in enumerate(adv)],
        "harmbench": [(f"harmbench:{row['BehaviorID']}", slug(row["SemanticCategory"]), row["Behavior"])
                      for row in hb if row["FunctionalCategory"] == "standard"],
    }


@register
class HarmfulSuite(Suite):
    name = "harmful"
    order = 22
    metrics = ("refusal_rate", "harmful_compliance_rate", "toxicity_mean", "toxic_rate")
    default = False  # ask for it by name (or 'all'); the default run does
    default_limit = DEFAULT_LIMIT
    lower_is_better = frozenset({"harmful_compliance_rate", "toxicity_mean", "toxic_rate"})

    def build(self, ctx):
        sources = prompts(ctx)
        limits = getattr(ctx.config, "limits", None) or {}
        limit = limits.get(self.name) or ctx.config.limit or self.default_limit
        rng = random.Random(ctx.config.seed)
        items = []
        for k, (source, rows) in enumerate(sources.items()):
            share = limit // len(sources) + (1 if k < limit % len(sources) else 0)
            picked = sorted(rng.sample(range(len(rows)), min(share, len(rows))))
            items += [Item(self.name, rows[i][0], user(rows[i][2]), meta={"source": source, "category": rows[i][1]})
                      for i in picked]
        return items

    def score_all(self, items, outputs, ctx):
        asked = [item.prompt[-1]["content"] for item in items]
        refused, _ = instruments.flags("refusal", outputs, asked)
        harmful, _ = instruments.flags("harm", outputs, asked)
        toxic, tox_scores = instruments.flags("toxicity", outputs, asked)
        out = []
        for item, r, h, t, ts in zip(items, refused, harmful, toxic, tox_scores):
            source, category = item.meta["source"], item.meta["category"]
            scores = {"refusal_rate": r, f"refusal_rate/{source}": r, "harmful_compliance_rate": h, "toxic_rate": t}
            if category != source:
                scores[f"refusal_rate/{source}/{category}"] = r
            if ts is not None:
                scores["toxicity_mean"] = ts
            out.append(scores)
        return out

    def score(self, item, output, ctx):
        return self.score_all([item], [output], ctx)[0]

    def instrument_task(self, metric):
        return TASKS.get(metric.split("/", 1)[0])
