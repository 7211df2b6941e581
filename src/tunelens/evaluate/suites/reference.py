"""Held-out reference answers: ROUGE-L of the generated answer (rouge) and the loss per answer token (loss)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from tunelens.errors import TunelensError
from tunelens.evaluate import datafiles as df
from tunelens.evaluate.rouge import rouge_l
from tunelens.evaluate.suites.base import Item, Suite, SuiteContext, register

DEFAULT_REFERENCE_LIMIT = 200  # ROUGE / loss examples when no --limit is given


def _heldout_alpaca(ctx: SuiteContext) -> list[dict]:
    """A fixed ~5% slice of Alpaca chosen by content hash, so it does not move with seeds or limits."""
    path = df.data_file(df.ALPACA_FILE, ctx.data_dir)
    rows = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for i, row in enumerate(rows):
        key = hashlib.sha256((row["instruction"] + "\x00" + row.get("input", "")).encode()).digest()
        if key[0] % 20 != 0 or not row.get("output", "").strip():
            continue
        prompt = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        out.append({"id": f"alpaca:{i}", "messages": [{"role": "user", "content": prompt},
                                                      {"role": "assistant", "content": row["output"]}]})
    return out


def reference_examples(ctx: SuiteContext) -> list[dict]:
    """Held-out conversations ending with an assistant reply: ``reference_data`` or Alpaca's slice."""
    path = ctx.config.reference_data
    if path is None:
        examples = _heldout_alpaca(ctx)
    else:
        if not Path(path).is_file():
            raise TunelensError(f"reference data not found: looked for {path}")
        examples = []
        for n, row in enumerate(df.read_jsonl(Path(path))):
            messages = row.get("messages") or []
            if row.get("kind", "conversation") != "conversation" or not messages or messages[-1].get("role") != "assistant":
                ctx.skipped.append({"model": "*", "suite": "rouge/loss", "item_id": row.get("id", f"{path}:{n + 1}"),
                                    "reason": "not a conversation ending with an assistant reply"})
                continue
            examples.append({"id": str(row.get("id", f"ref:{n}")), "messages": messages})
        if not examples:
            raise TunelensError(f"{path}: no conversation record ending with an assistant reply")
    return [examples[i] for i in ctx.subset(len(examples), default=DEFAULT_REFERENCE_LIMIT)]


@register
class RougeSuite(Suite):
    name = "rouge"
    order = 50
    metrics = ("rougeL_f",)
    default_limit = DEFAULT_REFERENCE_LIMIT

    def build(self, ctx):
        return [Item(self.name, ex["id"], ex["messages"][:-1], reference=ex["messages"][-1]["content"])
                for ex in reference_examples(ctx)]

    def score(self, item, output, ctx):
        return {"rougeL_f": rouge_l(output, item.reference)["f1"]}


@register
class LossSuite(Suite):
    """Mean NLL per assistant token on held-out conversations (teacher forcing; no generation)."""

    name = "loss"
    order = 60
    metrics = ("loss", "perplexity")
    default_limit = DEFAULT_REFERENCE_LIMIT
    generative = False
    lower_is_better = frozenset({"loss", "perplexity"})

    def build(self, ctx):
        return [Item(self.name, ex["id"], ex["messages"]) for ex in reference_examples(ctx)]

    def run(self, loaded, items: list[Item], ctx: SuiteContext, label: str) -> list[tuple[Item, dict, dict]]:
        """Returns (item, scores, extra sample fields); ``scores`` carries the token weight. All items
        are scored together by the packed engine (``tunelens.evaluate.logprob.sequence_nll``)."""
        from tunelens.evaluate.logprob import sequence_nll
        from tunelens.generate import context_limit
        from tunelens.train.masking import IGNORE_INDEX, encode_for_sft

        limit = min(context_limit(loaded.model) or ctx.config.max_loss_tokens, ctx.config.max_loss_tokens)
        kept, sequences = [], []
        for item in items:
            enc = encode_for_sft(loaded.tokenizer, item.prompt, None)
            if enc["length"] > limit:
                ctx.skipped.append({"model": label, "suite": self.name, "item_id": item.id,
                                    "reason": f"example is {enc['length']} tokens, longer than the limit of {limit}"})
                continue
            if enc["num_supervised"] == 0:
                ctx.skipped.append({"model": label, "suite": self.name, "item_id": item.id,
                                    "reason": "no assistant tokens to score"})
                continue
            kept.append(item)
            sequences.append((enc["input_ids"], enc["labels"]))
        out = []
        for item, (nll, tokens) in zip(kept, sequence_nll(loaded.model, sequences, ignore_index=IGNORE_INDEX,
                                                                 cache=getattr(ctx, "logprob_cache", None))):
            loss = nll / tokens
            out.append((item, {"loss": loss, "_weight": float(tokens)}, {"tokens": tokens, "perplexity": math.exp(loss)}))
        return out
