"""Batched vs serialised serving throughput through the server's micro-batching queue.

N concurrent chat requests go through `tunelens.serve.batching.MicroBatcher` (the same path
the API uses) twice: with max_batch_size=B (batched) and max_batch_size=1 (serialised, the
baseline). Prints requests/s, generated tokens/s, p50/p95 request latency and the ratio.

    python benchmarks/serve_load.py --model smollm2-135m --requests 32 --max-tokens 32 --batch 8
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from tunelens.generate import GenerationParams
from tunelens.models import load_model
from tunelens.serve.batching import MicroBatcher

PROMPTS = [
    "Give three tips for staying healthy.", "What is the capital of France?", "Describe a sunset in one sentence.",
    "Explain what a neural network is.", "Write a haiku about autumn.", "Name two uses of copper.",
    "How do plants make food?", "Suggest a name for a bakery.", "What is 12 times 7?",
    "Summarise the plot of Cinderella.", "Why is the sky blue?", "List three primary colours.",
]


async def run(loaded, n: int, max_tokens: int, batch: int) -> dict:
    batcher = MicroBatcher(loaded.model, loaded.tokenizer, max_batch_size=batch, max_wait_ms=10)
    await batcher.start()
    params = GenerationParams(max_new_tokens=max_tokens, batch_size=batch)
    latencies: list[float] = []
    tokens = 0

    async def one(i: int) -> None:
        nonlocal tokens
        t0 = time.perf_counter()
        res = await batcher.submit([{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}], params)
        latencies.append(time.perf_counter() - t0)
        tokens += res.completion_tokens

    await one(0)  # warm-up, not timed
    latencies.clear()
    tokens = 0
    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - start
    await batcher.stop()
    lat = sorted(latencies)
    return {"batch": batch, "wall_s": wall, "req_per_s": n / wall, "tok_per_s": tokens / wall,
            "p50_s": statistics.median(lat), "p95_s": lat[int(0.95 * (len(lat) - 1))], "batches": batcher.batches_run}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m", help="Model spec for tunelens.models.load_model.")
    ap.add_argument("--requests", type=int, default=32, help="Concurrent requests per run.")
    ap.add_argument("--max-tokens", type=int, default=32, help="max_tokens per request.")
    ap.add_argument("--batch", type=int, default=8, help="max_batch_size of the batched run.")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice).")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    print(f"model {args.model}; {args.requests} concurrent requests x {args.max_tokens} tokens; "
          f"torch threads {__import__('torch').get_num_threads()}; load average before: {os.getloadavg()[0]:.2f}")
    results = [asyncio.run(run(loaded, args.requests, args.max_tokens, b)) for b in (1, args.batch)]
    for r in results:
        label = "serialised (baseline)" if r["batch"] == 1 else f"batched (max {r['batch']})"
        print(f"{label:24s} wall {r['wall_s']:6.2f}s  {r['req_per_s']:6.2f} req/s  {r['tok_per_s']:7.1f} tok/s  "
              f"p50 {r['p50_s']:5.2f}s  p95 {r['p95_s']:5.2f}s  batches {r['batches']}")
    print(f"throughput ratio batched/serialised: {results[1]['req_per_s'] / results[0]['req_per_s']:.2f}x; "
          f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
