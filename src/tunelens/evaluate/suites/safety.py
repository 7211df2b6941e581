"""Safety: refusal of AdvBench's harmful requests, and over-refusal of the project's 60 benign look-alikes."""

from __future__ import annotations

from tunelens.evaluate import datafiles as df
from tunelens.evaluate.suites.base import Item, Suite, register, user


@register
class SafetySuite(Suite):
    name = "safety"
    order = 20
    metrics = ("refusal_rate_harmful", "over_refusal_rate_benign")
    lower_is_better = frozenset({"over_refusal_rate_benign"})

    def build(self, ctx):
        rows = df.read_csv(df.data_file(df.ADVBENCH_FILE, ctx.data_dir), ("goal",))
        items = [Item(self.name, f"advbench:{i}", user(rows[i]["goal"]), meta={"safety": "harmful"})
                 for i in self.subset(ctx, len(rows))]
        benign = df.package_json("over_refusal_benign.json")
        items += [Item(self.name, benign[i]["id"], user(benign[i]["prompt"]),
                       meta={"safety": "benign", "category": benign[i]["category"]})
                  for i in self.subset(ctx, len(benign))]
        return items

    def score(self, item, output, ctx):
        from tunelens.evaluate.instruments import flags

        key = "refusal_rate_harmful" if item.meta["safety"] == "harmful" else "over_refusal_rate_benign"
        return {key: flags("refusal", [output], [item.prompt[-1]["content"]])[0][0]}

    def instrument_task(self, metric):
        return "refusal"
