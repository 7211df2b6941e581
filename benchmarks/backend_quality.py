"""Do the generation backends score the same as hf fp32? Pass rates per backend, paired CIs.

Each variant (``hf`` = transformers fp32, the reference; ``llamacpp:f16``, ``llamacpp:q8_0`` =
llama.cpp on the model's GGUF export) is evaluated by ``tunelens.evaluate.evaluate`` itself (the
path `tunelens eval --backend/--quant` runs), one suite at a time, with the generation cache off
so every answer is generated in this run. The suites:

- ``builtin``: the project's verifiable suite (test + heldout items of a suite of
  ``--builtin-limit``: 30% of it is scored), pass rate, greedy, ``--builtin-max-new-tokens``;
- ``ifeval``: a seeded subset of ``--ifeval-n`` IFEval prompts, strict/loose accuracy at prompt
  and instruction level, ``--ifeval-max-new-tokens``.

Every variant is compared with ``hf`` on the same units by ``tunelens.evaluate.stats``'s paired
bootstrap (delta = variant - hf, 95% CI); "equal" means the CI contains 0. Also reported: how
many outputs are character-identical to hf's, and each run's wall time and generated tokens/s
(one pass each, not interleaved: read the speed as a side note; benchmarks/generate_throughput.py
measures speed).

Writes ``OUT/backend_quality.json`` and ``OUT/backend_quality.md`` (the table for
docs/benchmarks.md) and each run's results.json / samples.jsonl under ``OUT/runs/``.

    python benchmarks/backend_quality.py [--model smollm2-135m] [--variants hf,llamacpp:f16,llamacpp:q8_0]
        [--builtin-limit 1000] [--ifeval-n 160] [--out test-artifacts/backend_quality]

``--eval-stage RUN_DIR``: the evaluate stage of `tunelens run` (the embedded default run config,
or ``--run-config FILE``), once per variant with ``evaluate.backend``/``quant`` set to it, on the
trained adapter and suite split of an existing run (RUN_DIR/train/adapter, RUN_DIR/suite: copied,
the run itself is not touched), generation cache off, variants alternating over ``--rounds``.
Each stage's wall time is the pipeline's own (``stages.run_evaluate``), the llamacpp stages
including the GGUF export of the tuned adapter (its cached file is removed first, as every new run
trains a new adapter; the base model's GGUF stays cached, as on any machine after the first run).
Reported: wall time per variant and ratio, and every generative suite's headline metrics per model
(base, tuned) with the paired CI of variant - hf. Writes ``OUT/eval_stage.json`` / ``.md``.

    python benchmarks/backend_quality.py --eval-stage runs/default --variants hf,llamacpp:q8_0 [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

VERDICT = {True: "equal", False: "**different**", None: "(n < 2: no CI)"}
HEADLINE = {  # suite -> metrics compared (item-level units; inst_* are one unit per instruction)
    "builtin": ["pass_rate", "pass_rate/test", "pass_rate/heldout"],
    "ifeval": ["prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc"],
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def parse_variant(text: str) -> tuple[str, str, str]:
    """'hf' | 'llamacpp:q8_0' -> (label, backend, quant)."""
    backend, _, quant = text.partition(":")
    if backend == "hf":
        return "hf", "hf", "q8_0"  # quant is ignored by hf
    quant = quant or "q8_0"
    return f"{backend} {quant}", backend, quant


def run_one(model: str, suite: str, limit: int, max_new: int, backend: str, quant: str, batch: int, out: Path,
            seed: int, use_cache: bool) -> dict:
    from tunelens.evaluate import EvalConfig, evaluate

    cfg = EvalConfig(models=[{"spec": model, "label": "m"}], suites=[suite], limit=limit, seed=seed,
                     generation={"max_new_tokens": max_new, "batch_size": batch, "backend": backend, "quant": quant},
                     output_dir=out, use_cache=use_cache)
    start = time.perf_counter()
    results = evaluate(cfg, progress=False)
    wall = time.perf_counter() - start
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    return {"wall_s": round(wall, 2), "results": results["results"]["m"][suite], "cost": results["cost"]["m"],
            "backend": results["models"]["m"]["generation_backend"],
            "samples": {s["item_id"]: s for s in samples if s["suite"] == suite}}


def units(samples: dict[str, dict], metric: str) -> dict[str, float]:
    """{unit: value} of one metric over a run's samples (list-valued metrics: one unit per entry)."""
    out: dict[str, float] = {}
    for item_id, s in samples.items():
        value = (s.get("scores") or {}).get(metric)
        if value is None:
            continue
        if isinstance(value, list):
            out.update({f"{item_id}#{j}": float(v) for j, v in enumerate(value)})
        else:
            out[item_id] = float(value)
    return out


def compare(runs: dict[str, dict], reference: str, resamples: int, seed: int) -> list[dict]:
    from tunelens.evaluate.stats import mean_ci, paired_bootstrap

    rows = []
    for suite, metrics in HEADLINE.items():
        if suite not in runs[reference]:
            continue
        ref = runs[reference][suite]
        for metric in metrics:
            ref_units = units(ref["samples"], metric)
            if not ref_units:
                continue
            row = {"suite": suite, "metric": metric, "n": len(ref_units),
                   "values": {}, "vs_reference": {}}
            for label, per_suite in runs.items():
                got = units(per_suite[suite]["samples"], metric)
                common = sorted(set(ref_units) & set(got))
                vals = [got[u] for u in common]
                ci = mean_ci(vals, n_resamples=resamples, seed=seed)
                row["values"][label] = {"value": sum(vals) / len(vals), "ci": list(ci) if ci else None, "n": len(vals)}
                if label == reference:
                    continue
                res = paired_bootstrap([ref_units[u] for u in common], vals, n_resamples=resamples, seed=seed)
                res["equal_within_ci"] = bool(res["ci"] is not None and res["ci"][0] <= 0 <= res["ci"][1])
                row["vs_reference"][label] = res
            rows.append(row)
    return rows


def identical_outputs(runs: dict[str, dict], reference: str) -> dict[str, dict[str, list[int]]]:
    """{suite: {variant: [identical, total]}}: outputs character-equal to the reference's."""
    out: dict[str, dict[str, list[int]]] = {}
    for suite in runs[reference]:
        ref = runs[reference][suite]["samples"]
        for label, per_suite in runs.items():
            if label == reference:
                continue
            got = per_suite[suite]["samples"]
            common = [k for k in ref if k in got]
            same = sum(ref[k]["output"] == got[k]["output"] for k in common)
            out.setdefault(suite, {})[label] = [same, len(common)]
    return out


def markdown(doc: dict) -> str:
    ref = doc["reference"]
    labels = list(doc["variants"])
    others = [lab for lab in labels if lab != ref]
    head = ["suite", "metric", "units", f"{ref}"] + [f"{lab} | {lab} - {ref} [95% CI]" for lab in others]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * (3 + 1 + 2 * len(others))]
    for row in doc["comparisons"]:
        cells = [row["suite"], f"`{row['metric']}`", str(row["n"]), f"{row['values'][ref]['value']:.3f}"]
        for lab in others:
            res = row["vs_reference"][lab]
            ci = res["ci"]
            verdict = "equal" if res["equal_within_ci"] else "**different**"
            cells += [f"{row['values'][lab]['value']:.3f}",
                      f"{res['delta']:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] {verdict}" if ci else f"{res['delta']:+.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| suite | variant | outputs identical to hf | wall s | generated tok/s |")
    lines.append("|---|---|---|---|---|")
    for suite in doc["identical_outputs"]:
        for lab in labels:
            run = doc["variants"][lab]["suites"][suite]
            same = doc["identical_outputs"][suite].get(lab)
            cell = "reference" if same is None else f"{same[0]}/{same[1]}"
            lines.append(f"| {suite} | {lab} | {cell} | {run['wall_s']:.1f} | {run['tokens_per_s']} |")
    return "\n".join(lines) + "\n"


def one_stage(source: Path, work: Path, run_config: Path | None, backend: str, quant: str) -> dict:
    """The evaluate stage of a run (as `tunelens run` runs it) with ``backend``: wall time and results."""
    import shutil

    from rich.console import Console

    from tunelens.generate.backends import _model_digest
    from tunelens.models.store import cache_dir
    from tunelens.pipeline.config import load_run_config
    from tunelens.pipeline.stages import Context, run_evaluate

    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(source / "suite", work / "suite")
    shutil.copytree(source / "train" / "adapter", work / "train" / "adapter")
    if backend == "llamacpp":  # the tuned adapter is new in every run: its GGUF export is part of the stage
        for path in (cache_dir() / "gguf").glob(f"{_model_digest(str(work / 'train' / 'adapter'))}-*"):
            shutil.rmtree(path)
    config = load_run_config(run_config, {"run_dir": str(work), "evaluate.backend": backend,
                                          "evaluate.quant": quant, "evaluate.options": {"use_cache": False}})
    ctx = Context(config=config, dir=work, progress=False, console=Console(stderr=True, quiet=True))
    start, cpu = time.perf_counter(), time.process_time()
    run_evaluate(ctx)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    done = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "load_average_end": os.getloadavg()[0]}
    (work / "stage_time.json").write_text(json.dumps(done) + "\n", encoding="utf-8")
    return stage_result(work)


def stage_result(work: Path) -> dict:
    """A finished stage's time (stage_time.json), results and samples, read back from its folder."""
    results = json.loads((work / "eval" / "results.json").read_text(encoding="utf-8"))
    samples = [json.loads(line) for line in (work / "eval" / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    return {**json.loads((work / "stage_time.json").read_text(encoding="utf-8")),
            "cost": {label: results["cost"][label] for label in ("base", "tuned")},
            "backend": {label: results["models"][label]["generation_backend"] for label in ("base", "tuned")},
            "suites": list(results["results"]["base"]), "samples": samples}


def eval_stage(args, variants: list[tuple[str, str, str]]) -> None:
    import statistics

    from tunelens.evaluate.stats import paired_bootstrap
    from tunelens.evaluate.suites import all_suites

    source = args.eval_stage
    if not (source / "train" / "adapter").is_dir() or not (source / "suite").is_dir():
        sys.exit(f"{source} has no train/adapter or suite/: give the folder of a finished `tunelens run`")
    stages: dict[str, list[dict]] = {label: [] for label, _, _ in variants}
    print(f"evaluate stage of {source} per backend; host {cpu_model()}, load {os.getloadavg()[0]:.2f}", flush=True)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # --jobs 2 runs the variants of a round at the same time (each in its own process): on a shared
    # machine both then see the same load, and the ratio of their wall times is the fair one.
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        for r in range(args.rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            futures = []
            for label, backend, quant in order:
                work = args.out / "stage" / f"{label.replace(' ', '-')}-{r + 1}"
                if args.reuse and (work / "stage_time.json").is_file():  # finished by an earlier invocation
                    futures.append((label, None, work))
                else:
                    futures.append((label, pool.submit(one_stage, source, work, args.run_config, backend, quant), work))
            for label, fut, work in futures:
                res = fut.result() if fut is not None else stage_result(work)
                stages[label].append(res)
                gen = {m: res["cost"][m]["generation_seconds"] for m in ("base", "tuned")}
                print(f"round {r + 1} {label:14s} stage wall {res['wall_s']:.1f}s (CPU {res['cpu_s']:.1f}s), "
                      f"generation base {gen['base']:.1f}s tuned {gen['tuned']:.1f}s, "
                      f"load {res['load_average_end']:.2f}", flush=True)
    reference = variants[0][0]
    registry = all_suites()
    last = {label: runs[-1] for label, runs in stages.items()}
    comparisons = []
    for model in ("base", "tuned"):
        for suite in last[reference]["suites"]:
            cls = registry.get(suite)
            if cls is None or not cls.generative:
                continue
            for metric in cls.metrics:
                ref = units({s["item_id"]: s for s in last[reference]["samples"]
                             if s["model"] == model and s["suite"] == suite}, metric)
                if not ref:
                    continue
                for label in last:
                    if label == reference:
                        continue
                    got = units({s["item_id"]: s for s in last[label]["samples"]
                                 if s["model"] == model and s["suite"] == suite}, metric)
                    common = sorted(set(ref) & set(got))
                    res = paired_bootstrap([ref[u] for u in common], [got[u] for u in common], seed=0,
                                           higher_is_better=metric not in getattr(cls, "lower_is_better", ()))
                    comparisons.append({"model": model, "suite": suite, "metric": metric, "variant": label,
                                        "n": len(common), "reference": sum(ref[u] for u in common) / len(common),
                                        "value": sum(got[u] for u in common) / len(common), **res,
                                        "equal_within_ci": None if not res["ci"] else bool(res["ci"][0] <= 0 <= res["ci"][1])})
    walls = {label: statistics.median(r["wall_s"] for r in runs) for label, runs in stages.items()}
    lines = [f"| backend | evaluate stage wall s (median of {args.rounds}) | speed-up ({reference} wall / wall) | "
             "generation s base / tuned |",
             "|---|---|---|---|"]
    for label, runs in stages.items():
        gen = "; ".join(f"{r['cost']['base']['generation_seconds']:.0f} / {r['cost']['tuned']['generation_seconds']:.0f}"
                        for r in runs)
        lines.append(f"| {label} | {walls[label]:.1f} | {walls[reference] / walls[label]:.2f}x | {gen} |")
    lines += ["", f"| model | suite | metric | n | {reference} | variant | value | delta [95% CI] |",
              "|---|---|---|---|---|---|---|---|"]
    for c in comparisons:
        ci = f"[{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]" if c["ci"] else ""
        lines.append(f"| {c['model']} | {c['suite']} | `{c['metric']}` | {c['n']} | {c['reference']:.3f} | {c['variant']} "
                     f"| {c['value']:.3f} | {c['delta']:+.3f} {ci} {VERDICT[c['equal_within_ci']]} |")
    table = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "source_run": str(source),
           "host": {"cpu": cpu_model(), "cores": os.cpu_count()},
           "stages": {label: [{k: v for k, v in r.items() if k != "samples"} for r in runs] for label, runs in stages.items()},
           "wall_s_median": walls, "comparisons": comparisons}
    doc["jobs"] = args.jobs
    doc["threads"] = os.environ.get("OMP_NUM_THREADS", "torch default")
    (args.out / "eval_stage.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    (args.out / "eval_stage.md").write_text(table, encoding="utf-8")
    print("\n" + table)
    print(f"wrote {args.out / 'eval_stage.json'} and {args.out / 'eval_stage.md'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--variants", default="hf,llamacpp:f16,llamacpp:q8_0",
                    help="comma-separated: hf, llamacpp:<quant>, vllm; the first is the reference")
    ap.add_argument("--suites", default="builtin,ifeval")
    ap.add_argument("--builtin-limit", type=int, default=1000, help="suite size; its test+heldout 30%% is scored")
    ap.add_argument("--builtin-max-new-tokens", type=int, default=48)
    ap.add_argument("--ifeval-n", type=int, default=160)
    ap.add_argument("--ifeval-max-new-tokens", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=16, help="hf batch size (llamacpp decodes up to 4x this at once)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=Path("test-artifacts/backend_quality"))
    ap.add_argument("--cache", action="store_true", help="read/write the evaluation's generation cache (answers "
                    "cached by an earlier run count; its timings are then not this run's)")
    ap.add_argument("--eval-stage", type=Path, default=None, metavar="RUN_DIR",
                    help="time the evaluate stage of `tunelens run` per variant on RUN_DIR's adapter (see above)")
    ap.add_argument("--run-config", type=Path, default=None, help="--eval-stage: run config file (default: embedded)")
    ap.add_argument("--rounds", type=int, default=1, help="--eval-stage: rounds over the variants (alternating)")
    ap.add_argument("--reuse", action="store_true", help="--eval-stage: reuse stages an earlier invocation finished "
                    "(OUT/stage/<variant>-<round>/stage_time.json)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own process (on a shared machine "
                    "with OMP_NUM_THREADS=1: more CPU share; the wall times are then not comparable)")
    args = ap.parse_args()

    from tunelens.generate.backends import llama_cpp_available

    variants = [parse_variant(v.strip()) for v in args.variants.split(",") if v.strip()]
    if not llama_cpp_available():
        dropped = [v[0] for v in variants if v[1] == "llamacpp"]
        variants = [v for v in variants if v[1] != "llamacpp"]
        if dropped:
            print(f"llama-cpp-python is not installed: {', '.join(dropped)} skipped", file=sys.stderr)
    if len(variants) < 2:
        sys.exit("nothing to compare: need the reference and at least one more variant")
    if args.eval_stage is not None:
        return eval_stage(args, variants)
    suites = [s.strip() for s in args.suites.split(",") if s.strip()]
    settings = {"builtin": (args.builtin_limit, args.builtin_max_new_tokens),
                "ifeval": (args.ifeval_n, args.ifeval_max_new_tokens)}
    args.out.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    print(f"host CPU: {cpu_model()}; cores {os.cpu_count()}; load average {load0[0]:.2f}", flush=True)
    runs: dict[str, dict] = {label: {} for label, _, _ in variants}
    tasks = [(suite, label, backend, quant) for suite in suites for label, backend, quant in variants]

    def submit(pool, suite: str, label: str, backend: str, quant: str):
        limit, max_new = settings[suite]
        return pool.submit(run_one, args.model, suite, limit, max_new, backend, quant, args.batch_size,
                           args.out / "runs" / label.replace(" ", "-") / suite, args.seed, args.cache)

    from concurrent.futures import ProcessPoolExecutor

    import multiprocessing

    with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {submit(pool, *t): t for t in tasks}
        for fut, (suite, label, _, _) in futures.items():
            run = runs[label][suite] = fut.result()
            main_metric = HEADLINE[suite][0]
            print(f"{suite:8s} {label:16s} {main_metric} {run['results'][main_metric]['value']:.3f} "
                  f"n={run['results'][main_metric]['n']}  {run['wall_s']:.1f}s  "
                  f"{run['cost']['tokens_per_s']} tok/s  load {os.getloadavg()[0]:.2f}", flush=True)
    reference = variants[0][0]
    doc = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "host": {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average_start": load0[0],
                 "load_average_end": os.getloadavg()[0]},
        "model": args.model,
        "settings": {s: {"limit": settings[s][0], "max_new_tokens": settings[s][1]} for s in suites}
        | {"batch_size": args.batch_size, "seed": args.seed, "resamples": args.resamples, "cache": args.cache,
           "jobs": args.jobs, "threads": os.environ.get("OMP_NUM_THREADS", "torch default")},
        "reference": reference,
        "variants": {label: {"backend": next(iter(runs[label].values()))["backend"],
                             "suites": {s: {"wall_s": r["wall_s"], "tokens_per_s": r["cost"]["tokens_per_s"],
                                            "completion_tokens": r["cost"]["completion_tokens"],
                                            "cached_generations": r["cost"]["cached_generations"],
                                            "results": r["results"]} for s, r in runs[label].items()}}
                     for label in runs},
        "comparisons": compare(runs, reference, args.resamples, args.seed),
        "identical_outputs": identical_outputs(runs, reference),
    }
    (args.out / "backend_quality.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    table = markdown(doc)
    (args.out / "backend_quality.md").write_text(table, encoding="utf-8")
    print()
    print(table)
    print(f"wrote {args.out / 'backend_quality.json'} and {args.out / 'backend_quality.md'}")


if __name__ == "__main__":
    main()
