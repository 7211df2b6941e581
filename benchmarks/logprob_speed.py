"""How fast the log-probability suites score a model, packed engine against the engines of old, in one run.

    .venv/bin/python benchmarks/logprob_speed.py [--model smollm2-135m] [--rounds 2]

The default run's log-prob suites at its sizes: TruthfulQA MC (150 questions, MC1 + MC2 choices),
BBQ (180 items, 3 answers each) and the held-out loss (210 conversations; the default reference
slice of Alpaca here, the run uses its suite's test split). Each is scored by the suite's own
``run`` with the packed engine (today's default), and by the named baselines it replaced:

- ``prefix_cache``: TruthfulQA and BBQ through ``continuation_logprobs(engine="prefix_cache")``,
  one prompt at a time with its KV cache copied per batch of choices (the engine before packing);
- ``per_example``: the loss as the loss suite computed it before, one forward per conversation
  with the full vocabulary's logits at every position.

Rounds are interleaved (packed, baseline, packed, baseline ...) and the best of each is kept. The
largest difference between the engines' per-item values is reported too (they compute the same
numbers up to float rounding). No log-prob cache is used. Prints one JSON object; record it in
docs/benchmarks.md with the CPU model.
"""

from __future__ import annotations

import argparse
import json
import math
import time

from instrument_speed import _cpu


def _per_example_loss(loaded, items, ctx):
    """The loss suite before packing (kept here as the baseline): one forward per conversation."""
    import torch

    from tunelens.train.masking import IGNORE_INDEX, encode_for_sft

    out = {}
    for item in items:
        enc = encode_for_sft(loaded.tokenizer, item.prompt, None)
        if enc["length"] > ctx.config.max_loss_tokens or enc["num_supervised"] == 0:
            continue
        with torch.inference_mode():
            logits = loaded.model(input_ids=torch.tensor([enc["input_ids"]])).logits[0, :-1].float()
        targets = torch.tensor(enc["labels"][1:])
        nll = torch.nn.functional.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
        out[item.id] = {"loss": float(nll) / int((targets != IGNORE_INDEX).sum())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    import torch

    import tunelens.evaluate.logprob as lp
    from tunelens.evaluate import EvalConfig
    from tunelens.evaluate.suites import all_suites
    from tunelens.evaluate.suites.base import SuiteContext
    from tunelens.models import load_model

    cfg = EvalConfig(models=[args.model], suites=["truthfulqa_mc", "bbq", "loss"], output_dir="/tmp/logprob-bench",
                     limits={"truthfulqa_mc": 150, "bbq": 180, "loss": 210}, use_cache=False)
    ctx = SuiteContext(cfg)
    loaded = load_model(args.model)
    registry = all_suites()
    report = {"cpu": _cpu(), "threads": torch.get_num_threads(), "model": args.model, "rounds": args.rounds,
              "row_tokens": lp.ROW_TOKENS, "batch_tokens": lp.BATCH_TOKENS, "suites": {}}
    real = lp.continuation_logprobs

    def prefix_cache(*a, **kw):
        return real(*a, **{**kw, "engine": "prefix_cache"})

    for name in ("truthfulqa_mc", "bbq", "loss"):
        suite = registry[name]()
        items = suite.build(ctx)

        def packed():
            return {it.id: sc for it, sc, _ in suite.run(loaded, items, ctx, "m")}

        if name == "loss":
            base_name = "per_example"

            def baseline():
                return _per_example_loss(loaded, items, ctx)
        else:
            base_name = "prefix_cache"

            def baseline():
                lp.continuation_logprobs = prefix_cache
                try:
                    return {it.id: sc for it, sc, _ in suite.run(loaded, items, ctx, "m")}
                finally:
                    lp.continuation_logprobs = real

        times: dict[str, list[float]] = {"packed": [], base_name: []}
        results = {}
        for _ in range(args.rounds):
            for label, fn in (("packed", packed), (base_name, baseline)):
                t0 = time.perf_counter()
                results[label] = fn()
                times[label].append(time.perf_counter() - t0)
        a, b = results["packed"], results[base_name]
        diff = max(abs(a[k][m] - b[k][m]) for k in a for m in b[k]
                   if isinstance(b[k][m], float) and not math.isnan(b[k][m]))
        best = {k: min(v) for k, v in times.items()}
        report["suites"][name] = {"items": len(items), "baseline": base_name,
                                  "seconds": {k: [round(x, 2) for x in v] for k, v in times.items()},
                                  "speedup_best": round(best[base_name] / best["packed"], 2),
                                  "max_abs_diff": diff}
        print(json.dumps({name: report["suites"][name]}), flush=True)
    suites = report["suites"].values()
    total = {"packed": sum(min(s["seconds"]["packed"]) for s in suites),
             "baseline": sum(min(s["seconds"][s["baseline"]]) for s in suites)}
    report["total_best_seconds"] = {k: round(v, 2) for k, v in total.items()}
    report["total_speedup"] = round(total["baseline"] / total["packed"], 2)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
