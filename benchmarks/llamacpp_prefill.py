"""Prompt processing (prefill) speed: llama.cpp on the GGUF export against a torch fp32 forward pass.

Asks whether the log-probability suites (TruthfulQA MC, BBQ, the held-out loss), which are all
prefill, would run faster through llama.cpp than through transformers. Both sides process the same
random token rows in one process, interleaved rounds, best of ``--rounds``:

- ``torch``: ``model(input_ids)`` on rows of ``--row`` tokens, ``--batch`` rows per forward pass, logits
  kept at the last position only (``logits_to_keep=1``, as the packed log-prob engine keeps few);
- ``llamacpp-<quant>``: ``llama_decode`` of the same rows as ``--batch`` sequences of one batch, logits
  requested at the last token of each, memory cleared between batches.

    python benchmarks/llamacpp_prefill.py [--quants f16,q8_0] [--row 256] [--batch 8] [--rows 64] [--rounds 3]

Prints one JSON object with tokens/s per side and the host CPU.
"""

from __future__ import annotations

import argparse
import json
import time

from generate_throughput import cpu_model  # this directory: the script's own (sys.path[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--quants", default="f16,q8_0")
    ap.add_argument("--row", type=int, default=256, help="tokens per row")
    ap.add_argument("--batch", type=int, default=8, help="rows per forward pass / llama_decode call")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()

    import numpy as np
    import torch

    from tunelens.generate.backends import LlamaCppBackend, load_backend
    from tunelens.models import load_model

    rng = np.random.default_rng(0)
    rows = rng.integers(100, 40000, size=(a.rows, a.row)).tolist()
    lm = load_model(a.model)
    model = lm.model.eval()
    backends: dict[str, LlamaCppBackend] = {
        q: load_backend(a.model, "llamacpp", quant=q, progress=False) for q in a.quants.split(",")}

    def run_torch() -> float:
        t = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, len(rows), a.batch):
                model(input_ids=torch.tensor(rows[i:i + a.batch]), logits_to_keep=1)
        return time.perf_counter() - t

    def run_llamacpp(b: LlamaCppBackend) -> float:
        b._ensure_ctx(a.batch, a.row + 8)
        mem = b._lc.llama_get_memory(b._ctx)
        t = time.perf_counter()
        for i in range(0, len(rows), a.batch):
            b._lc.llama_memory_clear(mem, True)
            b._decode([(tok, pos, s, pos == a.row - 1) for s, row in enumerate(rows[i:i + a.batch])
                       for pos, tok in enumerate(row)])
        return time.perf_counter() - t

    best: dict[str, float] = {}
    for _ in range(a.rounds):
        for name, fn in [("torch fp32", run_torch)] + [(f"llamacpp-{q}", (lambda b=b: run_llamacpp(b)))
                                                        for q, b in backends.items()]:
            s = fn()
            best[name] = min(best.get(name, s), s)
    tokens = a.rows * a.row
    print(json.dumps({"cpu": cpu_model(), "torch_threads": torch.get_num_threads(), "tokens": tokens,
                      "row": a.row, "batch": a.batch, "rounds": a.rounds,
                      "tokens_per_s": {k: round(tokens / v) for k, v in best.items()},
                      "seconds_best": {k: round(v, 2) for k, v in best.items()},
                      "vs_torch": {k: round(best["torch fp32"] / v, 2) for k, v in best.items()}}, indent=1))


if __name__ == "__main__":
    main()
