"""Generation throughput: batched tunelens engine vs plain `model.generate` one prompt at a time.

Same model (SmolLM2-135M-Instruct, fp32, CPU), same 64 IFEval prompts, greedy, same
max_new_tokens, in one run. Prints generated tokens/s of each and the ratio.

    python benchmarks/generate_throughput.py [--n 64] [--max-new-tokens 64] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from tunelens.generate import GenerationParams, generate, render_prompt
from tunelens.models import load_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ifeval_input_data.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()

    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()[: args.n]]
    prompts = [[{"role": "user", "content": r["prompt"]}] for r in rows]
    lm = load_model(args.model)
    tok, model = lm.tokenizer, lm.model
    print(f"model={lm.model_id} prompts={len(prompts)} max_new_tokens={args.max_new_tokens} "
          f"threads={torch.get_num_threads()} load={os.getloadavg()[0]:.2f}")

    params = GenerationParams(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    start = time.perf_counter()
    results = generate(model, tok, prompts, params)
    ours_s = time.perf_counter() - start
    ours_tokens = sum(r.completion_tokens for r in results)

    # Baseline: the plain transformers loop a user would write, one prompt at a time.
    start = time.perf_counter()
    base_tokens = 0
    for p in prompts:
        enc = tok(render_prompt(tok, p), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=args.max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        new = out[0, enc["input_ids"].shape[1]:].tolist()
        base_tokens += len(new)
    base_s = time.perf_counter() - start

    ours_tps, base_tps = ours_tokens / ours_s, base_tokens / base_s
    print(f"tunelens batched (bs={args.batch_size}): {ours_tokens} tokens in {ours_s:.1f}s = {ours_tps:.1f} tok/s")
    print(f"plain model.generate, one by one: {base_tokens} tokens in {base_s:.1f}s = {base_tps:.1f} tok/s")
    print(f"speed-up: {ours_tps / base_tps:.2f}x (target >= 4x)")


if __name__ == "__main__":
    main()
