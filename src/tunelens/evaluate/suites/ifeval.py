"""IFEval: Google's 541 verifiable instructions, scored by the IFEval checkers (strict, prompt and instruction level)."""

from __future__ import annotations

from tunelens.evaluate import datafiles as df
from tunelens.evaluate import ifeval
from tunelens.evaluate.suites.base import Item, Suite, SuiteContext, register, user


def ifeval_rows(ctx: SuiteContext) -> list[dict]:
    """The IFEval prompts, each row checked."""
    path = df.data_file(df.IFEVAL_FILE, ctx.data_dir)
    rows = df.read_jsonl(path)
    for i, row in enumerate(rows):
        ifeval.validate_row(row, f"{path}:{i + 1}")
    return rows


@register
class IFEvalSuite(Suite):
    name = "ifeval"
    order = 10
    metrics = ("prompt_level_strict_acc", "prompt_level_loose_acc", "inst_level_strict_acc", "inst_level_loose_acc")

    def build(self, ctx):
        rows = ifeval_rows(ctx)
        return [Item(self.name, f"ifeval:{rows[i]['key']}", user(rows[i]["prompt"]), reference=rows[i])
                for i in self.subset(ctx, len(rows))]

    def score(self, item, output, ctx):
        return ifeval.score_item(item.reference, output)
