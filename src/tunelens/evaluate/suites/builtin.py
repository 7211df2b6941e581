"""The project's own verifiable suite (tunelens.suite): pass rates per split and family, refusal rates."""

from __future__ import annotations

from tunelens.errors import TunelensError
from tunelens.evaluate import fewshot
from tunelens.evaluate.suites.base import Item, Suite, SuiteContext, register


@register
class BuiltinSuite(Suite):
    """The project's own verifiable suite (tunelens.suite): pass rates per split and family."""

    name = "builtin"
    order = 80
    metrics = ("pass_rate", "refusal_rate_harmful", "over_refusal_rate_benign")
    default = False
    few_shot = True
    default_limit = 200  # the suite size given to tunelens.suite.eval_items
    lower_is_better = frozenset({"over_refusal_rate_benign"})

    @classmethod
    def available(cls) -> bool:
        """Whether the project's verifiable suite (tunelens.suite) exposes its eval API."""
        import tunelens.suite as suite_mod

        return hasattr(suite_mod, "eval_items") and hasattr(suite_mod, "score")

    def _api(self):
        import tunelens.suite as suite_mod

        eval_items, score = getattr(suite_mod, "eval_items", None), getattr(suite_mod, "score", None)
        if eval_items is None or score is None:
            raise TunelensError("the builtin suite needs tunelens.suite.eval_items and tunelens.suite.score, "
                                "which this install does not provide")
        return eval_items, score

    def build(self, ctx):
        eval_items, _ = self._api()
        records = eval_items(ctx.config.limit or self.default_limit, ctx.config.seed)
        questions = []
        for rec in records:
            messages = list(rec["messages"])
            if messages and messages[-1]["role"] == "assistant":
                messages = messages[:-1]
            questions.append((rec, messages))
        items = [Item(self.name, f"builtin:{rec['id']}", messages, variant="0shot", reference=rec,
                      meta=dict(rec.get("meta", {}))) for rec, messages in questions]
        if ctx.config.few_shot_for(self.name):
            items += self._kshot_items(questions, ctx)
        return items

    def _kshot_items(self, questions: list[tuple[dict, list[dict]]], ctx: SuiteContext) -> list[Item]:
        """Each question again, after k exemplars of its family from the suite's train split.

        Held-out families have no train split by design, so their items get no k-shot variant
        (listed in ``skipped``); the few-shot/zero-shot cost compares the items with both.
        """
        from tunelens.suite import HELDOUT_FAMILIES

        fs = ctx.config.few_shot
        variant = f"{fs.k}shot"
        trained = {rec["meta"]["family"] for rec, _ in questions if rec["meta"]["family"] not in HELDOUT_FAMILIES}
        eval_prompts = {m["content"] for _, messages in questions for m in messages if m["role"] == "user"}
        pools = fewshot.builtin_pools(trained, fs.k, ctx.config.seed, eval_prompts)
        items = []
        for rec, messages in questions:
            item_id = f"builtin:{rec['id']}"
            family = rec["meta"]["family"]
            if family not in pools:
                ctx.skipped.append({"model": "*", "suite": self.name, "item_id": f"{item_id}:{variant}",
                                    "reason": f"family {family!r} is held out: no train-split exemplars for a k-shot prompt"})
                continue
            shots = fewshot.pick(pools[family], fs.k, fs.seed, item_id)
            items.append(Item(self.name, f"{item_id}:{variant}", fewshot.with_shots(messages, shots), unit=item_id,
                              variant=variant, reference=rec,
                              meta={**rec.get("meta", {}), "exemplars": [r["id"] for r in shots]}))
        return items

    def score(self, item, output, ctx):
        from tunelens.evaluate.instruments import flags

        _, score = self._api()
        passed = float(score(item.reference, output)["pass"])
        split, family = item.meta.get("split", "unknown"), item.meta.get("family", "unknown")
        # Zero-shot keeps the plain names (the pipeline and model cards read them); k-shot gets a suffix.
        tag = "" if item.variant in ("", "0shot") else f"_{item.variant}"
        scores = {f"pass_rate{tag}": passed, f"pass_rate{tag}/{split}": passed, f"pass_rate{tag}/{split}/{family}": passed}
        safety = item.meta.get("safety")
        if safety in ("harmful", "benign"):
            refused = flags("refusal", [output], [item.prompt[-1]["content"]])[0][0]
            scores[f"refusal_rate_harmful{tag}" if safety == "harmful" else f"over_refusal_rate_benign{tag}"] = refused
        return scores

    def instrument_task(self, metric):
        return "refusal" if metric.split("/", 1)[0].startswith(("refusal_rate_harmful", "over_refusal_rate_benign")) else None

    def accuracy_metric(self, variant):
        return "pass_rate" if variant == "0shot" else f"pass_rate_{variant}"
