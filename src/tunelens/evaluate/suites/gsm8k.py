"""GSM8K: grade-school maths, exact match on the final number, zero-shot and (optionally) k-shot."""

from __future__ import annotations

from tunelens.errors import TunelensError
from tunelens.evaluate import datafiles as df
from tunelens.evaluate import gsm8k
from tunelens.evaluate.suites.base import Item, Suite, register


@register
class GSM8KSuite(Suite):
    name = "gsm8k"
    order = 40
    few_shot = True

    def build(self, ctx):
        test = df.read_jsonl(df.data_file(df.GSM8K_TEST_FILE, ctx.data_dir))
        k = ctx.config.few_shot.k
        variants: list[tuple[str, list[dict]]] = [("0shot", [])]
        if ctx.config.few_shot_for(self.name):
            train = df.read_jsonl(df.data_file(df.GSM8K_TRAIN_FILE, ctx.data_dir))
            try:
                variants.append((f"{k}shot", gsm8k.pick_exemplars(train, k, ctx.config.few_shot.seed)))
            except ValueError as exc:
                raise TunelensError(f"few_shot.k: {exc}") from exc
        items = []
        for i in self.subset(ctx, len(test)):
            row = test[i]
            try:
                reference = gsm8k.reference_answer(row["answer"])
            except (KeyError, ValueError) as exc:
                raise TunelensError(f"{df.GSM8K_TEST_FILE} row {i + 1}: {exc}") from exc
            for variant, shots in variants:
                items.append(Item(self.name, f"gsm8k:{i}:{variant}", gsm8k.build_messages(row["question"], shots),
                                  unit=f"gsm8k:{i}", variant=variant, reference=reference))
        return items

    def score(self, item, output, ctx):
        return {f"exact_match_{item.variant}": gsm8k.exact_match(output, item.reference)}

    def accuracy_metric(self, variant):
        return f"exact_match_{variant}"
