"""What continuous batching in the llamacpp backend costs per step, and what its two fixes buy.

llama.cpp, with one KV stream per sequence (our ``kv_unified=False``), splits a batch into
micro-batches of *consecutive* seq ids (``llama_batch_allocr::split_equal(..., sequential=true)``),
one forward pass each. So once sequences finish and leave holes in the ids, every step costs
several passes. The backend now keeps active sequences on ids 0..n-1 (``compact``) and decodes a
prefix shared by all prompts once (``share_prefix``).

Part 1, step costs (``--steps``): one decode step of B sequences (each with an 80-token prompt
already in its cache) for B = 1..64; then 64 sequences from which one in three steps a random one
leaves, with and without compaction.

Part 2, the eval workload (the first ``--n`` IFEval prompts, greedy, ``--max-new-tokens``, up to
64 sequences per decode, the backend's default) in interleaved rounds, three arms on one loaded
GGUF: ``holes`` (neither fix: the code before), ``compact``, ``compact+prefix`` (the default).
Per arm: tokens/s (median of rounds), the seconds inside ``llama_decode`` for prompt rows and for
decode-only steps, prompt tokens decoded, and how many greedy answers equal the ``holes`` arm's.

    OMP_NUM_THREADS=2 python benchmarks/llamacpp_batching.py [--quant q8_0] [--rounds 3] [--steps]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from generate_throughput import cpu_model  # this directory: the script's own (sys.path[0])

from tunelens.generate import GenerationParams
from tunelens.generate.backends import LlamaCppBackend, llama_cpp_available, load_backend

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ifeval_input_data.jsonl"


def step_costs(b: LlamaCppBackend) -> None:
    lc = b._lc
    b._ensure_ctx(64, 256)
    mem = lc.llama_get_memory(b._ctx)

    def prefill(n: int) -> None:
        lc.llama_memory_clear(mem, True)
        b._decode([(100 + i % 50, i, s, i == 79) for s in range(n) for i in range(80)])

    print("one decode step, B sequences on ids 0..B-1, 80 tokens cached each (median of 10 steps):")
    for n in (1, 2, 4, 8, 16, 32, 64):
        prefill(n)
        times = []
        for st in range(10):
            t = time.perf_counter()
            b._decode([(200 + s, 80 + st, s, True) for s in range(n)])
            times.append(time.perf_counter() - t)
        ms = 1000 * statistics.median(times)
        print(f"  B={n:2d}: {ms:6.1f} ms per step, {ms / n:5.2f} ms per token, {1000 * n / ms:6.0f} tok/s")
    print("64 sequences, one leaves every third step (seeded), 60 steps; ms per step every 10th step:")
    for compact in (False, True):
        prefill(64)
        rng = random.Random(1)
        active, out = list(range(64)), []
        for st in range(60):
            if st and st % 3 == 0:
                gone = rng.choice(active)
                active.remove(gone)
                lc.llama_memory_seq_rm(mem, gone, -1, -1)
                if compact and gone < max(active):  # what generate()'s compact() does
                    high = max(active)
                    lc.llama_memory_seq_cp(mem, high, gone, -1, -1)
                    lc.llama_memory_seq_rm(mem, high, -1, -1)
                    active.remove(high)
                    active.append(gone)
                    active.sort()
            t = time.perf_counter()
            b._decode([(200 + s, 80 + st, s, True) for s in active])
            out.append((len(active), 1000 * (time.perf_counter() - t)))
        total = sum(ms for _, ms in out)
        print(f"  {'compacted' if compact else 'with holes'}: " + ", ".join(f"B={n} {ms:.0f}" for n, ms in out[::10])
              + f"; all 60 steps {total / 1000:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--quant", default="q8_0")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", action="store_true", help="also measure step costs (part 1)")
    args = ap.parse_args()
    if not llama_cpp_available():
        raise SystemExit("needs llama-cpp-python (make llamacpp)")
    b = load_backend(args.model, "llamacpp", quant=args.quant, say=print)
    assert isinstance(b, LlamaCppBackend)
    print(f"host CPU: {cpu_model()}; threads {b.threads}; GGUF {b.info.gguf} ({b.info.quant}); build {b.info.build}")
    if args.steps:
        step_costs(b)
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()[: args.n]]
    prompts = [[{"role": "user", "content": r["prompt"]}] for r in rows]
    params = GenerationParams(max_new_tokens=args.max_new_tokens)
    arms = {"holes": (False, False), "compact": (True, False), "compact+prefix": (True, True)}
    split: dict[str, list[float]] = {"prompt": [0.0, 0], "decode": [0.0, 0]}
    decode = b._decode

    def timed(rows_):  # seconds inside _decode, prompt rows vs decode-only steps
        t = time.perf_counter()
        out = decode(rows_)
        kind = "decode" if all(r[3] for r in rows_) else "prompt"
        split[kind][0] += time.perf_counter() - t
        split[kind][1] += len(rows_)
        return out

    b._decode = timed
    b.generate(prompts[:4], params)  # warm-up; sizes the context
    tps = {a: [] for a in arms}
    parts = {a: {} for a in arms}
    texts: dict[str, list[str]] = {}
    for r in range(args.rounds):
        order = list(arms) if r % 2 == 0 else list(arms)[::-1]
        for arm in order:
            b.compact, b.share_prefix = arms[arm]
            split.clear()
            split.update({"prompt": [0.0, 0], "decode": [0.0, 0]})
            t = time.perf_counter()
            res = b.generate(prompts, params)
            sec = time.perf_counter() - t
            n_tok = sum(x.completion_tokens for x in res)
            tps[arm].append(n_tok / sec)
            parts[arm] = {k: (round(v[0], 2), v[1]) for k, v in split.items()}
            texts[arm] = [x.text for x in res]
            print(f"round {r + 1} {arm:15s} {n_tok} tokens {sec:6.2f} s {n_tok / sec:6.1f} tok/s  "
                  f"prompt rows {split['prompt'][0]:.2f} s ({split['prompt'][1]} rows), decode steps {split['decode'][0]:.2f} s",
                  flush=True)
    base = statistics.median(tps["holes"])
    print(f"\narm              tok/s (median of {args.rounds})   vs holes   greedy answers = holes'")
    for arm in arms:
        same = sum(x == y for x, y in zip(texts[arm], texts["holes"]))
        med = statistics.median(tps[arm])
        print(f"{arm:16s} {med:10.1f}            {med / base:6.2f}x   {same}/{len(prompts)}")
    b.close()


if __name__ == "__main__":
    main()
