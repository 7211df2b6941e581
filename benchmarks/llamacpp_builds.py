"""The llama.cpp builds `make llamacpp` makes, against each other on this CPU, in one run.

    .venv/bin/python benchmarks/llamacpp_builds.py [--builds avx2,avx512] [--quants q8_0,f16]
        [--parallel 16,64] [--n 64] [--max-new-tokens 64] [--rounds 2]

Each build is the wheel `make llamacpp` left in ``~/.cache/tunelens/wheels/llama-cpp-python-<version>-<variant>``
(the baseline is ``avx2``, the portable build every x86-64 host of this project runs; ``make llamacpp
LLAMA_WHEELS=...`` or a copy of another host's folder provides the others). Each is installed once into
a temporary folder and measured in a child process that imports it first on ``PYTHONPATH``: tunelens's
``llamacpp`` backend on the model's GGUF export (the same file for every build), the first N IFEval
prompts, greedy, N new tokens, ``parallel`` sequences per decode. A build this CPU cannot run (its
compiled features need flags the CPU lacks) is skipped and said so. Rounds are interleaved (every
build, quant and parallel once, then again) and the median is kept; each child warms up on 4 prompts
first. The generated texts of the builds are compared too (same GGUF, different kernels: greedy text
may differ after a near-tie; the share of identical outputs is printed).

Prints one line per measurement and a JSON summary; record it in docs/benchmarks.md with the CPU model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from instrument_speed import _cpu

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ifeval_input_data.jsonl"
WHEELS = Path(os.environ.get("LLAMA_WHEELS", Path.home() / ".cache" / "tunelens" / "wheels"))

CHILD = r"""
import json, sys, time
from tunelens.generate import GenerationParams
from tunelens.generate.backends import load_backend
from tunelens.generate.cpu import llama_cpp_status
import llama_cpp
args = json.loads(sys.argv[1])
rows = [json.loads(l) for l in open(args["data"], encoding="utf-8").read().splitlines()[: args["n"]]]
prompts = [[{"role": "user", "content": r["prompt"]}] for r in rows]
b = load_backend(args["model"], "llamacpp", quant=args["quant"], progress=False)
b.max_parallel = args["parallel"]
params = GenerationParams(max_new_tokens=args["max_new_tokens"], batch_size=args["parallel"])
b.generate(prompts[: min(4, len(prompts))], params)
t = time.perf_counter()
res = b.generate(prompts, params)
sec = time.perf_counter() - t
print(json.dumps({"file": llama_cpp.__file__, "features": llama_cpp_status().reason, "seconds": sec,
                  "tokens": sum(r.completion_tokens for r in res), "texts": [r.text for r in res]}))
"""


def install(variant: str, version: str, into: Path) -> Path | None:
    wheels = sorted((WHEELS / f"llama-cpp-python-{version}-{variant}").glob("llama_cpp_python-*.whl"))
    if not wheels:
        print(f"{variant}: no wheel in {WHEELS}/llama-cpp-python-{version}-{variant} (run `make llamacpp` on a host "
              "of that kind): skipped", flush=True)
        return None
    target = into / variant
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheels[-1])],
                   check=True)
    return target


def usable(target: Path) -> tuple[bool, str]:
    from tunelens.generate import cpu

    env = {**os.environ, "PYTHONPATH": f"{target}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    status = cpu._status_from_probe(*cpu._probe(env))
    return status.usable, status.reason


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--builds", default="avx2,avx512", help="variants; the first is the baseline")
    ap.add_argument("--version", default="0.3.36")
    ap.add_argument("--quants", default="q8_0,f16")
    ap.add_argument("--parallel", default="16,64")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    quants = [q for q in args.quants.split(",") if q]
    parallels = [int(p) for p in args.parallel.split(",") if p]
    print(f"host CPU: {_cpu()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="llamacpp-builds-") as tmp:
        builds: dict[str, Path] = {}
        for variant in [v for v in args.builds.split(",") if v]:
            target = install(variant, args.version, Path(tmp))
            if target is None:
                continue
            ok, why = usable(target)
            print(f"{variant}: {why}", flush=True)
            if ok:
                builds[variant] = target
        if not builds:
            raise SystemExit("no build to measure")
        times: dict[tuple[str, str, int], list[float]] = {}
        texts: dict[tuple[str, str, int], list[str]] = {}
        for r in range(args.rounds):
            for variant, target in builds.items():
                for quant in quants:
                    for par in parallels:
                        spec = {"model": args.model, "quant": quant, "parallel": par, "n": args.n,
                                "max_new_tokens": args.max_new_tokens, "data": str(DATA)}
                        env = {**os.environ, "PYTHONPATH": f"{target}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
                        done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True,
                                              text=True, env=env)
                        if done.returncode != 0:
                            raise SystemExit(f"{variant} {quant} x{par} failed:\n{done.stderr[-2000:]}")
                        out = json.loads(done.stdout.strip().splitlines()[-1])
                        assert str(target) in out["file"], f"the child imported {out['file']}, not {target}"
                        tps = out["tokens"] / out["seconds"]
                        times.setdefault((variant, quant, par), []).append(tps)
                        texts[variant, quant, par] = out["texts"]
                        print(f"round {r + 1} {variant:7s} {quant:5s} parallel {par:3d}: {out['tokens']} tokens "
                              f"{out['seconds']:6.1f} s {tps:7.1f} tok/s", flush=True)
    base = next(iter(builds))
    summary = {"host_cpu": _cpu(), "baseline_build": base, "rounds": args.rounds, "n": args.n,
               "max_new_tokens": args.max_new_tokens, "results": []}
    print(f"\nbuild    quant  parallel  median tok/s  vs {base} (same quant, parallel)  same text as {base}")
    for (variant, quant, par), values in times.items():
        med = statistics.median(values)
        ref = statistics.median(times[base, quant, par])
        same = sum(a == b for a, b in zip(texts[variant, quant, par], texts[base, quant, par])) / len(texts[base, quant, par])
        print(f"{variant:8s} {quant:5s} {par:8d}  {med:12.1f}  {med / ref:6.2f}x  {same:8.0%}")
        summary["results"].append({"build": variant, "quant": quant, "parallel": par, "tok_s": [round(v, 1) for v in values],
                                   "median_tok_s": round(med, 1), "vs_baseline": round(med / ref, 3),
                                   "same_text_as_baseline": round(same, 3)})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
