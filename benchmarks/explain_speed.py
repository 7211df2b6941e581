"""Seconds per explanation on IFEval prompts with SmolLM2-135M: tunelens vs captum.

tunelens input x gradient and integrated gradients run on every prompt; captum's
LLMAttribution(FeatureAblation) and LLMGradientAttribution(LayerIntegratedGradients) only on
the first few (they take minutes each). Every method explains the same greedy response, and
comprehensiveness / sufficiency (tunelens.explain.faithfulness, same random baseline) is
reported alongside the time. Run:

    python benchmarks/explain_speed.py --prompts 20 --captum-prompts 3 --response-tokens 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from tunelens.explain import Attribution, attribute, faithfulness
from tunelens.explain.gradients import completeness_gap
from tunelens.generate import GenerationParams, generate
from tunelens.models import load_model

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ifeval_input_data.jsonl"


def captum_attribution(kind: str, model, tok, ours: Attribution, steps: int) -> Attribution:
    from captum.attr import FeatureAblation, LayerIntegratedGradients, LLMAttribution, LLMGradientAttribution, TextTokenInput

    inp = TextTokenInput(ours.prompt_text, tok)
    if inp.inp_tensor[0].tolist() != ours.input_ids:
        raise SystemExit("captum tokenised the prompt differently from tunelens; cannot compare")
    target = torch.tensor(ours.output_ids)
    if kind == "feature_ablation":
        res = LLMAttribution(FeatureAblation(model), tok).attribute(inp, target=target)
    else:
        lig = LayerIntegratedGradients(model, model.get_input_embeddings())
        res = LLMGradientAttribution(lig, tok).attribute(inp, target=target, n_steps=steps)
    matrix = res.token_attr.detach().double().cpu().numpy()
    return Attribution(**{**ours.__dict__, "matrix": matrix, "aggregate": matrix.sum(0), "method": f"captum_{kind}"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=20, help="IFEval prompts for the tunelens methods")
    ap.add_argument("--captum-prompts", type=int, default=3, help="of those, how many also run the captum baselines")
    ap.add_argument("--response-tokens", type=int, default=10, help="greedy response length to explain")
    ap.add_argument("--max-prompt-chars", type=int, default=260, help="keep prompts near 70 tokens like the issue's example")
    ap.add_argument("--steps", type=int, default=16, help="integrated-gradients steps (ours and captum's)")
    ap.add_argument("--ig-steps", default="", help="also run our IG at these step counts (e.g. 4,8), to compare "
                    "time at equal completeness error")
    ap.add_argument("--n-random", type=int, default=4, help="random selections per k in the faithfulness baseline")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--json", type=Path, default=None, help="also write all figures here")
    args = ap.parse_args()

    loaded = load_model("smollm2-135m")
    model, tok = loaded.model, loaded.tokenizer
    rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    prompts = [r["prompt"] for r in rows if len(r["prompt"]) <= args.max_prompt_chars][: args.prompts]
    conversations = [[{"role": "user", "content": p}] for p in prompts]
    responses = [r.text for r in generate(model, tok, conversations, GenerationParams(max_new_tokens=args.response_tokens))]
    print(f"torch threads={torch.get_num_threads()} load average={os.getloadavg()}")

    results: dict[str, list[dict]] = {}

    def run(name: str, fn, i: int, ig_baseline=None) -> Attribution:
        t0 = time.perf_counter()
        attr = fn()
        seconds = time.perf_counter() - t0
        faith = faithfulness(model, tok, attr, n_random=args.n_random)
        gap = None
        if ig_baseline is not None:  # completeness: rows should sum to f(x) - f(baseline)
            gap = completeness_gap(model, attr.input_ids, attr.output_ids, attr.matrix, baseline=ig_baseline)["relative_gap"]
        results.setdefault(name, []).append({"completeness_gap": gap,
            "prompt": i, "seconds": seconds, "prompt_tokens": len(attr.input_ids), "response_tokens": len(attr.output_ids),
            "comprehensiveness": faith["comprehensiveness_mean"], "sufficiency": faith["sufficiency_mean"],
            "comprehensiveness_random": faith["comprehensiveness_random_mean"], "better_than_random": faith["better_than_random"],
        })
        print(f"  {name:28s} prompt {i:2d}: {seconds:7.2f} s  comp {faith['comprehensiveness_mean']:7.3f} "
              f"(random {faith['comprehensiveness_random_mean']:6.3f})  suff {faith['sufficiency_mean']:7.3f}"
              + (f"  completeness gap {gap:.3f}" if gap is not None else ""), flush=True)
        return attr

    # The captum prompts go first, and the summary is rewritten after every prompt, so a run cut
    # short (minutes per captum explanation) still leaves comparable figures.
    for i, (conv, response) in enumerate(zip(conversations, responses)):
        ixg = run("tunelens input_x_gradient", lambda: attribute(model, tok, conv, response, "input_x_gradient"), i)
        run("tunelens integrated_gradients", lambda: attribute(model, tok, conv, response, "integrated_gradients", steps=args.steps), i,
            ig_baseline="mean")
        for n in [int(x) for x in args.ig_steps.split(",") if x.strip()]:
            run(f"tunelens integrated_gradients {n} steps",
                lambda: attribute(model, tok, conv, response, "integrated_gradients", steps=n), i, ig_baseline="mean")
        if i < args.captum_prompts:
            # captum's TextTokenInput baseline: token id 0 in every prompt position
            run("captum LayerIntegratedGradients", lambda: captum_attribution("lig", model, tok, ixg, args.steps), i,
                ig_baseline=0)
            run("captum FeatureAblation", lambda: captum_attribution("feature_ablation", model, tok, ixg, args.steps), i)
        summarise(results, args, final=i == len(conversations) - 1)


def summarise(results: dict[str, list[dict]], args: argparse.Namespace, final: bool) -> None:
    n_captum = min(args.captum_prompts, len(results["captum FeatureAblation"])) if "captum FeatureAblation" in results else 0
    print(f"\n{'final' if final else 'partial'} summary, load average {os.getloadavg()}")
    print(f"{'method':32s} {'n':>3s} {'s/expl (all)':>12s} {'s/expl (captum prompts)':>24s} {'comp (captum prompts)':>22s} {'comp (all)':>10s}")
    summary = {}
    for name, rs in results.items():
        sub = [r for r in rs if r["prompt"] < n_captum] or rs
        summary[name] = {
            "n": len(rs),
            "seconds_mean": statistics.mean(r["seconds"] for r in rs),
            "seconds_mean_captum_prompts": statistics.mean(r["seconds"] for r in sub),
            "comprehensiveness_captum_prompts": statistics.mean(r["comprehensiveness"] for r in sub),
            "comprehensiveness_mean": statistics.mean(r["comprehensiveness"] for r in rs),
            "better_than_random_share": float(np.mean([r["better_than_random"] for r in rs])),
            "completeness_gap_captum_prompts": (statistics.mean(r["completeness_gap"] for r in sub)
                                                if sub[0].get("completeness_gap") is not None else None),
            "prompt_tokens_mean": statistics.mean(r["prompt_tokens"] for r in rs),
            "response_tokens_mean": statistics.mean(r["response_tokens"] for r in rs),
        }
        s = summary[name]
        print(f"{name:32s} {s['n']:3d} {s['seconds_mean']:12.2f} {s['seconds_mean_captum_prompts']:24.2f} "
              f"{s['comprehensiveness_captum_prompts']:22.3f} {s['comprehensiveness_mean']:10.3f}")
    if n_captum:
        fa = summary["captum FeatureAblation"]
        lig = summary["captum LayerIntegratedGradients"]
        ixg = summary["tunelens input_x_gradient"]
        ig = summary["tunelens integrated_gradients"]
        print(f"ratios on the {n_captum} captum prompt(s):")
        print(f"  input_x_gradient vs captum FeatureAblation: {fa['seconds_mean_captum_prompts'] / ixg['seconds_mean_captum_prompts']:.1f}x faster "
              f"(target >= 50x), comprehensiveness {ixg['comprehensiveness_captum_prompts']:.3f} vs {fa['comprehensiveness_captum_prompts']:.3f}")
        print(f"  integrated_gradients vs captum LayerIntegratedGradients: {lig['seconds_mean_captum_prompts'] / ig['seconds_mean_captum_prompts']:.1f}x faster "
              f"(target >= 5x), comprehensiveness {ig['comprehensiveness_captum_prompts']:.3f} vs {lig['comprehensiveness_captum_prompts']:.3f}, "
              f"completeness gap {ig['completeness_gap_captum_prompts']:.3f} vs {lig['completeness_gap_captum_prompts']:.3f}", flush=True)
        # Equal accuracy: the fewest of our step counts whose completeness gap is no worse than captum's.
        ours = sorted(((int(name.split()[-2]), s) for name, s in summary.items()
                       if name.startswith("tunelens integrated_gradients ") and name.endswith(" steps")), key=lambda t: t[0])
        ours.append((args.steps, ig))
        good = [(n, s) for n, s in ours if s["completeness_gap_captum_prompts"] <= lig["completeness_gap_captum_prompts"]]
        if good:
            n, s = min(good, key=lambda t: t[0])
            print(f"  at equal completeness (our {n} steps, gap {s['completeness_gap_captum_prompts']:.3f} <= captum's "
                  f"{lig['completeness_gap_captum_prompts']:.3f} at {args.steps}): "
                  f"{lig['seconds_mean_captum_prompts'] / s['seconds_mean_captum_prompts']:.1f}x faster", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "final": final, "summary": summary, "runs": results}, indent=1))


if __name__ == "__main__":
    main()
