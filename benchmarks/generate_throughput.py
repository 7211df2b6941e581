"""Generation throughput and quality of each backend against plain batched ``model.generate``.

The eval workload: the first N IFEval prompts, greedy, ``--max-new-tokens``, batches of
``--batch-size``, one model (SmolLM2-135M-Instruct by default). In one run, in interleaved
rounds so drift of the machine hits every variant alike:

- ``baseline``: what a user would write: ``model.generate`` on left-padded batches, fp32;
- ``hf``: tunelens's transformers backend (the engine: length-sorted batches, fp32);
- ``llamacpp-<quant>``: tunelens's llama.cpp backend on the model's GGUF export, continuous
  batching of ``--batch-size`` sequences.

Prints tokens/s per round, the median, each variant's ratio to the baseline, and IFEval
prompt-level strict accuracy of each backend's outputs with the paired bootstrap CI of its
difference to ``hf`` (equal scores are the condition for a speed-up to count).

    python benchmarks/generate_throughput.py [--n 64] [--max-new-tokens 64] [--batch-size 16]
        [--quants q8_0,f16] [--rounds 2]

``--latency``: batch-1 latency per generated token of tunelens's ``llamacpp`` backend against a
bare ``llama_cpp.Llama`` generation loop (``Llama.generate`` greedy, what a llama-cpp-python user
writes; llama-bench is not shipped by the Python package) on the same GGUF, same threads, one
prompt at a time, interleaved. Per prompt each side runs with max_new_tokens 1 (prefill + first
token) and N; decode latency per token = (t(N) - t(1)) / (tokens(N) - 1), summed over prompts,
in wall time and in this process's CPU time (``time.process_time``: with one thread it is the
work done, which other jobs on a shared machine do not inflate as they inflate wall time).

On a GPU machine: ``--device cuda --vllm`` runs the baseline and ``hf`` on the GPU (fp32) and adds
tunelens's ``vllm`` backend (vLLM's own dtype choice, bf16 for an fp32 checkpoint; recorded).

    python benchmarks/generate_throughput.py --latency [--quants q8_0] [--n 8] [--max-new-tokens 64]
        [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from tunelens.generate import GenerationParams, render_prompt
from tunelens.generate.backends import llama_cpp_available, load_backend
from tunelens.models import load_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ifeval_input_data.jsonl"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def plain_batched(lm, prompts, max_new: int, batch_size: int) -> tuple[list[str], int]:
    """The baseline: model.generate on left-padded batches in input order."""
    tok, model = lm.tokenizer, lm.model
    tok.padding_side = "left"
    texts, n_tokens = [], 0
    for s in range(0, len(prompts), batch_size):
        chunk = [render_prompt(tok, p) for p in prompts[s:s + batch_size]]
        enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_new, do_sample=False, pad_token_id=tok.pad_token_id)
        for row in out[:, enc["input_ids"].shape[1]:].tolist():
            eos = [i for i, t in enumerate(row) if t == tok.eos_token_id]
            row = row[: eos[0] + 1] if eos else row
            n_tokens += len(row)
            texts.append(tok.decode(row, skip_special_tokens=True))
    return texts, n_tokens


def bare_tokens(llm, ids: list[int], max_new: int, eos_ids: set[int]) -> int:
    """A bare llama-cpp-python greedy loop: tokens generated (EOS counted, as the backends count it).

    ``llm.reset()`` first: ``Llama.generate`` otherwise reuses the KV cache of the previous call's
    common prefix, and the t(N) call after t(1) on the same prompt would skip its prefill (measured:
    that alone made the bare loop look 1.9 ms/token, 17%, faster). Every call prefills, as ours does."""
    llm.reset()
    n = 0
    for tok in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, reset=True):
        n += 1
        if tok in eos_ids or n >= max_new:
            break
    return n


def latency(args, prompts: list) -> None:
    """Batch-1 decode latency per token: the llamacpp backend against a bare ``llama_cpp.Llama`` loop."""
    from llama_cpp import Llama

    from tunelens.generate.backends import LlamaCppBackend, _cpu_threads
    from tunelens.generate.engine import encode_prompts

    quant = args.quants.split(",")[0]
    backend = load_backend(args.model, "llamacpp", quant=quant, say=print)
    backend.max_parallel = 1  # one sequence: batch 1
    assert isinstance(backend, LlamaCppBackend)
    threads = _cpu_threads()
    ids = [x for x, _ in encode_prompts(backend.tokenizer, prompts, GenerationParams(max_new_tokens=args.max_new_tokens),
                                         backend.context)]
    n_ctx = -(-(max(map(len, ids)) + args.max_new_tokens) // 256) * 256
    llm = Llama(model_path=backend.info.gguf, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
    eos = set(backend.eos_ids)
    print(f"GGUF {backend.info.gguf} ({quant}); threads {threads}; {len(prompts)} prompts, one at a time; "
          f"max_new_tokens {args.max_new_tokens}; load {os.getloadavg()[0]:.2f}")

    def ours(k: int, max_new: int) -> tuple[float, float, int]:
        t, c = time.perf_counter(), time.process_time()
        (res,) = backend.generate([prompts[k]], GenerationParams(max_new_tokens=max_new))
        return time.perf_counter() - t, time.process_time() - c, res.completion_tokens

    def bare(k: int, max_new: int) -> tuple[float, float, int]:
        t, c = time.perf_counter(), time.process_time()
        n = bare_tokens(llm, ids[k], max_new, eos)
        return time.perf_counter() - t, time.process_time() - c, n

    longest = max(range(len(ids)), key=lambda k: len(ids[k]))
    ours(longest, args.max_new_tokens), bare(longest, args.max_new_tokens)  # warm-up; sizes our context once
    sides = {"tunelens llamacpp": ours, "bare llama_cpp.Llama": bare}
    wall: dict[str, list[float]] = {name: [] for name in sides}  # decode ms/token per round
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    first: dict[str, list[float]] = {name: [] for name in sides}
    counts: dict[str, list[int]] = {name: [] for name in sides}
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]
        acc = {name: [0.0, 0.0, 0] for name in sides}  # wall s, cpu s, tokens (decode only)
        for k in range(len(prompts)):
            for name in order:
                w1, c1, _ = sides[name](k, 1)
                wn, cn, n = sides[name](k, args.max_new_tokens)
                first[name].append(w1)
                if n > 1:
                    acc[name][0] += wn - w1
                    acc[name][1] += cn - c1
                    acc[name][2] += n - 1
                if r == 0:
                    counts[name].append(n)
        for name in sides:
            wall[name].append(1000 * acc[name][0] / max(acc[name][2], 1))
            cpu[name].append(1000 * acc[name][1] / max(acc[name][2], 1))
        print(f"round {r + 1}: " + "  ".join(f"{name} {wall[name][-1]:.2f} ms/token (cpu {cpu[name][-1]:.2f})"
                                             for name in sides) + f"  load {os.getloadavg()[0]:.2f}", flush=True)
    if counts["tunelens llamacpp"] != counts["bare llama_cpp.Llama"]:
        print(f"note: token counts differ: {counts}")
    print(f"\n{sum(counts['tunelens llamacpp'])} tokens per side per round; medians of {args.rounds} rounds")
    print("side                    decode wall ms/token   tok/s   decode CPU ms/token   first token wall s")
    for name in sides:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"{name:22s} {w:14.2f} {1000 / w:12.1f} {c:14.2f} {statistics.median(first[name]):18.3f}")
    for label, d in (("wall", wall), ("CPU", cpu)):
        ratios = [a / b for a, b in zip(d["tunelens llamacpp"], d["bare llama_cpp.Llama"])]
        print(f"tunelens / bare ({label}): {statistics.median(ratios):.3f}x (per round: "
              f"{', '.join(f'{x:.3f}' for x in ratios)}); target <= 1.2x")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    backend.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--quants", default="q8_0,f16", help="GGUF quantisations for the llamacpp backend")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--latency", action="store_true", help="batch-1 latency per token: llamacpp backend vs bare Llama")
    ap.add_argument("--device", default="cpu", help="where the baseline and hf run (cuda on a GPU machine)")
    ap.add_argument("--vllm", action="store_true", help="add tunelens's vllm backend (CUDA and vllm needed)")
    args = ap.parse_args()

    from tunelens.evaluate.ifeval import score_item
    from tunelens.evaluate.stats import paired_bootstrap

    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()[: args.n]]
    prompts = [[{"role": "user", "content": r["prompt"]}] for r in rows]
    if args.latency:
        if not llama_cpp_available():
            raise SystemExit("--latency needs llama-cpp-python")
        return latency(args, prompts)
    params = GenerationParams(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    lm = load_model(args.model)
    lm.model.to(args.device)
    print(f"host CPU: {cpu_model()}; threads={torch.get_num_threads()}; load={os.getloadavg()[0]:.2f}")
    if args.device.startswith("cuda"):
        print(f"GPU: {torch.cuda.get_device_name(0)}; baseline and hf in fp32 on it")
    print(f"model={lm.model_id} prompts={len(prompts)} max_new_tokens={args.max_new_tokens} batch={args.batch_size}")

    variants = {"baseline": None, "hf": load_backend(args.model, "hf", loaded=lm)}
    if args.vllm:
        variants["vllm"] = load_backend(args.model, "vllm", say=print,
                                        vllm_options={"gpu_memory_utilization": 0.5})
        print(f"vllm runs {variants['vllm'].info.quant}")
    if llama_cpp_available() and not args.device.startswith("cuda"):
        for q in [q for q in args.quants.split(",") if q]:
            variants[f"llamacpp-{q}"] = load_backend(args.model, "llamacpp", quant=q, say=print)
    else:
        print("llama-cpp-python is not installed: llamacpp variants skipped")

    tps: dict[str, list[float]] = {k: [] for k in variants}
    outputs: dict[str, list[str]] = {}
    for r in range(args.rounds):
        for name, backend in variants.items():
            start = time.perf_counter()
            if backend is None:
                texts, n_tok = plain_batched(lm, prompts, args.max_new_tokens, args.batch_size)
            else:
                res = backend.generate(prompts, params)
                texts, n_tok = [x.text for x in res], sum(x.completion_tokens for x in res)
            sec = time.perf_counter() - start
            tps[name].append(n_tok / sec)
            outputs[name] = texts
            print(f"round {r + 1} {name:16s} {n_tok:6d} tokens {sec:7.1f} s {n_tok / sec:7.1f} tok/s")

    base = statistics.median(tps["baseline"])
    print("\nvariant            median tok/s   vs baseline   IFEval strict (prompt)   delta vs hf [95% CI]")
    scores = {name: [float(score_item(row, text)["prompt_level_strict_acc"]) for row, text in zip(rows, texts)]
              for name, texts in outputs.items()}
    for name in variants:
        med = statistics.median(tps[name])
        acc = sum(scores[name]) / len(scores[name])
        if name == "hf":
            cmp = "(reference)"
        else:
            res = paired_bootstrap(scores["hf"], scores[name], seed=0)
            eq = "equal within CI" if res["ci"][0] <= 0 <= res["ci"][1] else "DIFFERENT"
            cmp = f"{res['delta']:+.3f} [{res['ci'][0]:+.3f}, {res['ci'][1]:+.3f}] {eq}"
        print(f"{name:18s} {med:12.1f}   {med / base:10.2f}x   {acc:22.3f}   {cmp}")


if __name__ == "__main__":
    main()
