"""How fast the safety instruments score replies, against a named baseline in the same run.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/instrument_speed.py [--n 10000] [--repeats 2]

Replies: Alpaca outputs (real assistant text, 5-1000+ characters) cycled to ``--n``, with the
AdvBench goals as prompts for the instruments that need one. For each instrument the script
loads it once (load time reported apart), then times ``classify`` on all ``n`` replies, best of
``--repeats``. Baseline: the previous regex refusal detector (``legacy_refusal_score``) on the
same replies. ``--injection-artifact PATH`` also times another injection artifact (e.g. an earlier version, from
``git show REV:src/tunelens/safety/artifacts/injection.joblib``) on the same replies in the same run, interleaved with
the shipped one. Other instruments register themselves in ``INSTRUMENTS`` below (task, how to build
its examples). Prints one JSON object; record it in docs/benchmarks.md with the CPU model.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from itertools import cycle, islice


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _data(n: int) -> tuple[list[str], list[str]]:
    import csv

    from tunelens.datafiles import data_file

    alpaca = json.loads(data_file("alpaca_data.json").read_text(encoding="utf-8"))
    replies = [r["output"] for r in alpaca if r["output"].strip()]
    with data_file("advbench_harmful_behaviors.csv").open(encoding="utf-8", newline="") as fh:
        prompts = [r["goal"] for r in csv.DictReader(fh)]
    return list(islice(cycle(replies), n)), list(islice(cycle(prompts), n))


# task -> does it need the prompt (refusal and harm read prompt/reply pairs; others add themselves here)
INSTRUMENTS: dict[str, bool] = {"refusal": False, "harm": True, "toxicity": False, "injection": False}


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=None, help="instrument tasks to time (default: all registered here)")
    ap.add_argument("--injection-artifact", default=None,
                    help="another injection artifact (joblib) to time on the same replies, as a baseline")
    args = ap.parse_args()
    replies, prompts = _data(args.n)
    out: dict = {"n": args.n, "cpu": _cpu(), "repeats": args.repeats, "results": {}}

    from tunelens.safety.refusal import legacy_refusal_score

    t = _best(lambda: [legacy_refusal_score(r) for r in replies], args.repeats)
    out["results"]["baseline:legacy_refusal_regex"] = {"seconds": round(t, 2), "per_second": round(args.n / t)}

    from tunelens.safety.instruments import Example, get_instrument

    for task, needs_prompt in INSTRUMENTS.items():
        if args.only and task not in args.only:
            continue
        t0 = time.perf_counter()
        inst = get_instrument(task)
        load = time.perf_counter() - t0
        examples = [Example(r, p if needs_prompt else None) for r, p in zip(replies, prompts)]
        t = _best(lambda: inst.classify(examples), args.repeats)
        out["results"][task] = {"seconds": round(t, 2), "per_second": round(args.n / t), "load_seconds": round(load, 2)}
        if task == "injection" and getattr(inst, "_fast", None) is not None:
            # Baseline in the same run: every view (the text and its two-sentence windows included)
            # through the pipeline, as before the sentence fast path.
            fast, inst._fast = inst._fast, None
            t = _best(lambda: inst.classify(examples), args.repeats)
            inst._fast = fast
            out["results"]["baseline:injection_every_view_through_the_pipeline"] = {
                "seconds": round(t, 2), "per_second": round(args.n / t)}
        if task == "injection" and args.injection_artifact:
            from tunelens.safety.instruments.injection import InjectionInstrument

            other = InjectionInstrument(args.injection_artifact)
            # interleaved with the shipped one, so that a slow spell of a shared host hits both
            times = {"other": [], "shipped": []}
            for _ in range(args.repeats):
                times["other"].append(_best(lambda: other.classify(examples), 1))
                times["shipped"].append(_best(lambda: inst.classify(examples), 1))
            out["results"][f"baseline:injection_artifact:{args.injection_artifact}"] = {
                "seconds": round(min(times["other"]), 2), "per_second": round(args.n / min(times["other"]))}
            out["results"]["injection_interleaved_with_it"] = {
                "seconds": round(min(times["shipped"]), 2), "per_second": round(args.n / min(times["shipped"]))}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
