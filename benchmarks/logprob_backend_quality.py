"""Do the multiple-choice suites score the same through llama.cpp as through transformers fp32?

TruthfulQA MC and BBQ are scored from the log-probabilities of each answer choice. With
``generation.logprob_backend: llamacpp`` those come from llama.cpp on the model's GGUF export
(``LlamaCppBackend.continuation_logprobs``) instead of the fp32 torch model. Each model is evaluated by
``tunelens.evaluate.evaluate`` once per variant (``hf`` = the fp32 reference; ``llamacpp:f16``,
``llamacpp:q8_0``), caches off, and each variant is compared with ``hf`` on the same items:

- per-item metrics (TruthfulQA MC1 / MC2, BBQ accuracy): the paired bootstrap of
  ``tunelens.evaluate.stats`` (delta = variant - hf, 95% CI; "equal" = the CI contains 0), the items
  whose chosen answer changed, and the largest per-item difference;
- BBQ's bias scores (not per item): both values;
- each suite's seconds (one pass each: a side note; ``benchmarks/evaluate_stage.sh`` times the stage).

    python benchmarks/logprob_backend_quality.py [--models smollm2-135m,RUN_DIR/train/adapter]
        [--variants hf,llamacpp:f16,llamacpp:q8_0] [--out test-artifacts/logprob_quality]

Writes OUT/logprob_quality.json and OUT/logprob_quality.md (the table for docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from generate_throughput import cpu_model  # this directory: the script's own (sys.path[0])

SUITES = ("truthfulqa_mc", "bbq")
PER_ITEM = {"truthfulqa_mc": ("mc1", "mc2"), "bbq": ("accuracy",)}
BIAS = ("bias_score_ambig", "bias_score_disambig")


def run_variant(spec: str, variant: str, out: Path) -> tuple[dict, dict[tuple[str, str], dict]]:
    from tunelens.evaluate.config import EvalConfig
    from tunelens.evaluate.runner import evaluate

    backend, _, quant = variant.partition(":")
    config = EvalConfig(models=[{"spec": spec, "label": "m"}], suites=list(SUITES), use_cache=False,
                        output_dir=str(out), seed=0,
                        generation={"logprob_backend": backend, **({"quant": quant} if quant else {})})
    results = evaluate(config, progress=False)
    items = {}
    for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        items[(row["suite"], row["item_id"])] = row["scores"]
    return results, items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2-135m", help="comma-separated model specs (a model or an adapter)")
    ap.add_argument("--variants", default="hf,llamacpp:f16,llamacpp:q8_0")
    ap.add_argument("--out", type=Path, default=Path("test-artifacts/logprob_quality"))
    a = ap.parse_args()

    from tunelens.evaluate import stats

    variants = a.variants.split(",")
    if variants[0] != "hf":
        ap.error("the first variant is the reference and must be hf")
    report: dict = {"cpu": cpu_model(), "models": {}}
    lines = ["| model | variant | metric | hf | variant | delta [95% CI] | equal | answers changed | largest item difference | seconds (TQA + BBQ) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for spec in a.models.split(","):
        runs = {v: run_variant(spec, v, a.out / "runs" / spec.replace("/", "_") / v.replace(":", "_")) for v in variants}
        ref_results, ref_items = runs["hf"]
        per_model: dict = {}
        for v in variants[1:]:
            results, items = runs[v]
            secs = sum(results["cost"]["m"]["suite_seconds"].get(s, 0) for s in SUITES)
            ref_secs = sum(ref_results["cost"]["m"]["suite_seconds"].get(s, 0) for s in SUITES)
            entry: dict = {"seconds": round(secs, 1), "hf_seconds": round(ref_secs, 1),
                           "logprob_backend": results["models"]["m"].get("logprob_backend")}
            for suite, metrics in PER_ITEM.items():
                keys = sorted(k for k in ref_items if k[0] == suite and k in items)
                for metric in metrics:
                    x = [float(ref_items[k][metric]) for k in keys]
                    y = [float(items[k][metric]) for k in keys]
                    cmp = stats.paired_bootstrap(x, y)
                    changed = sum(1 for p, q in zip(x, y) if (p > 0.5) != (q > 0.5)) if metric != "mc2" else None
                    largest = max(abs(p - q) for p, q in zip(x, y))
                    entry[f"{suite}/{metric}"] = {"hf": sum(x) / len(x), "variant": sum(y) / len(y), "n": len(x),
                                                  "delta": cmp["delta"], "ci": cmp["ci"],
                                                  "equal": cmp["ci"] is not None and cmp["ci"][0] <= 0 <= cmp["ci"][1],
                                                  "answers_changed": changed, "largest_item_difference": largest}
                    ci = cmp["ci"]
                    lines.append(f"| {spec} | {v} | {suite} {metric} | {sum(x) / len(x):.4f} | {sum(y) / len(y):.4f} | "
                                 f"{cmp['delta']:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}] | {'yes' if entry[f'{suite}/{metric}']['equal'] else 'NO'} | "
                                 f"{'' if changed is None else f'{changed}/{len(x)}'} | {largest:.4f} | "
                                 f"{secs:.1f} (hf {ref_secs:.1f}) |")
            for b in BIAS:
                entry[f"bbq/{b}"] = {"hf": ref_results["results"]["m"]["bbq"].get(b, {}).get("value"),
                                     "variant": results["results"]["m"]["bbq"].get(b, {}).get("value")}
            per_model[v] = entry
        report["models"][spec] = per_model
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "logprob_quality.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (a.out / "logprob_quality.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    print(json.dumps({m: {v: {b: e[f"bbq/{b}"] for b in BIAS} for v, e in r.items()} for m, r in report["models"].items()},
                     indent=1))


if __name__ == "__main__":
    main()
