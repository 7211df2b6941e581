"""Integrated-gradients baselines on SmolLM2-135M: faithfulness against completeness.

For IFEval prompts under 260 characters and their 10-token greedy responses, runs tunelens
integrated gradients (16 Gauss-Legendre steps by default) with each baseline and prints, per
prompt, comprehensiveness, the random-selection comprehensiveness it must beat, and the relative
completeness gap (``tunelens.explain.gradients.completeness_gap``). Not timed.

    python benchmarks/explain_ig_baselines.py --start 0 --count 4
    python benchmarks/explain_ig_baselines.py --start 4 --count 10 --baselines zero,mean
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from tunelens.explain import attribute, faithfulness
from tunelens.explain.gradients import completeness_gap
from tunelens.generate import GenerationParams, generate
from tunelens.models import load_model

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ifeval_input_data.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", type=int, default=0, help="first prompt (of those under 260 characters)")
    ap.add_argument("--count", type=int, default=4)
    ap.add_argument("--baselines", default="mean,pad,zero")
    ap.add_argument("--approximations", default="gausslegendre", help="e.g. gausslegendre,riemann_trapezoid")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()

    loaded = load_model("smollm2-135m")
    model, tok = loaded.model, loaded.tokenizer
    rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    prompts = [r["prompt"] for r in rows if len(r["prompt"]) <= 260][args.start : args.start + args.count]
    convs = [[{"role": "user", "content": p}] for p in prompts]
    responses = [r.text for r in generate(model, tok, convs, GenerationParams(max_new_tokens=10))]
    for baseline in args.baselines.split(","):
        for approximation in args.approximations.split(","):
            comp, rand, gaps = [], [], []
            for conv, response in zip(convs, responses):
                attr = attribute(model, tok, conv, response, "integrated_gradients", steps=args.steps,
                                 baseline=baseline, approximation=approximation)
                faith = faithfulness(model, tok, attr, n_random=4)
                comp.append(faith["comprehensiveness_mean"])
                rand.append(faith["comprehensiveness_random_mean"])
                gaps.append(completeness_gap(model, attr.input_ids, attr.output_ids, attr.matrix,
                                             baseline=baseline, tokenizer=tok)["relative_gap"])
            better = sum(c > r for c, r in zip(comp, rand))
            print(f"{baseline:5s} {approximation}: comprehensiveness {np.round(comp, 2)} random {np.round(rand, 2)} "
                  f"gap {np.round(gaps, 2)}; better than random on {better}/{len(comp)}", flush=True)


if __name__ == "__main__":
    main()
