"""Run the suites on every model, score, compare, and write results.json / samples.jsonl / report.html."""

from __future__ import annotations

import gc
import itertools
import json
import math
import platform
import threading
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from tunelens.errors import TunelensError
from tunelens.evaluate import fewshot, stats
from tunelens.evaluate.cache import GenerationCache, LogprobCache
from tunelens.evaluate.config import EvalConfig
from tunelens.evaluate.suites import Item, Suite, SuiteContext, all_suites

SCHEMA = "tunelens.eval/v3"  # v2: cost.fewshot_vs_zeroshot is per suite; v3: statistics, instrument rates, suite_seconds
CHUNK_BATCHES = 4  # batches per generate() call: progress and cache writes between calls


class PeakRSS:
    """Samples this process's resident memory in a thread; ``peak_mb`` after exit."""

    def __init__(self, interval: float = 0.05):
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.peak = self._proc.memory_info().rss

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("tunelens", "torch", "transformers", "numpy", "scikit-learn"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _cache_root(config: EvalConfig) -> Path:
    if config.cache_dir is not None:
        return config.cache_dir
    from tunelens.models import cache_dir

    return cache_dir() / "eval-generations"


def _generate_all(loaded, backend, items: list[Item], config: EvalConfig, cache: GenerationCache, label: str,
                  progress: bool) -> dict[str, dict]:
    """Outputs for every distinct rendered prompt: from the cache, or generated in batches by ``backend``."""
    from tunelens.generate import GenerationParams, render_prompt

    g = config.generation
    params = GenerationParams(max_new_tokens=g.max_new_tokens, temperature=g.temperature, top_p=g.top_p,
                              seed=config.seed, stop=list(g.stop), batch_size=g.batch_size, on_too_long="skip")
    rendered: dict[str, str] = {}
    group_of: dict[str, tuple[str, str]] = {}
    for item in items:
        rendered[item.id] = text = render_prompt(loaded.tokenizer, item.prompt)
        group_of.setdefault(text, (item.suite, item.variant))
    outputs: dict[str, dict] = {}
    missing: list[str] = []
    for text in dict.fromkeys(rendered.values()):
        hit = cache.get(text)
        if hit is not None:
            outputs[text] = {**hit, "cached": True}
        else:
            missing.append(text)
    # Generate each (suite, variant) group in its own calls, so that the seconds attributed to an
    # item are measured on its own group (few-shot and zero-shot prompts never share a batch).
    group_rank = {g: i for i, g in enumerate(dict.fromkeys(group_of.values()))}
    missing.sort(key=lambda t: group_rank[group_of[t]])
    chunks: list[list[str]] = []
    chunk = g.batch_size * CHUNK_BATCHES
    for _, texts in itertools.groupby(missing, key=lambda t: group_of[t]):
        texts = list(texts)
        chunks += [texts[i:i + chunk] for i in range(0, len(texts), chunk)]
    bar = None
    if progress and missing:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        bar.start()
        task = bar.add_task(f"{label}: generating", total=len(missing))
    try:
        for texts in chunks:
            t0 = time.perf_counter()
            results = backend.generate(texts, params)
            ran = sum(1 for r in results if r.finish_reason != "too_long")
            share = (time.perf_counter() - t0) / max(ran, 1)
            fresh = []
            for text, res in zip(texts, results):
                row = {"text": res.text, "prompt_tokens": res.prompt_tokens, "completion_tokens": res.completion_tokens,
                       "finish_reason": res.finish_reason, "latency_s": res.latency_s,
                       "seconds": share if res.finish_reason != "too_long" else 0.0,
                       "error": res.error}
                outputs[text] = {**row, "cached": False}
                if res.finish_reason != "too_long":
                    fresh.append((text, row))
            cache.put_many(fresh)
            if bar is not None:
                bar.update(task, advance=len(texts))
    finally:
        if bar is not None:
            bar.stop()
    return {item_id: {**outputs[text], "rendered": text} for item_id, text in rendered.items()}


def _metric(values: list[float], weights: list[float] | None, config: EvalConfig) -> dict:
    ci = stats.mean_ci(values, weights, n_resamples=config.bootstrap_resamples, seed=config.seed)
    return {"value": stats.weighted_mean(values, weights), "ci": list(ci) if ci else None, "n": len(values)}


class ModelRun:
    """Everything measured for one model: per-unit scores, samples, cost."""

    def __init__(self, label: str):
        self.label = label
        # units[suite][metric] = {unit_id: value}; weights likewise (loss only)
        self.units: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
        self.weights: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
        self.samples: list[dict] = []
        self.generations: list[dict] = []
        self.item_costs: dict[tuple[str, str, str], dict] = {}  # (suite, unit, variant) -> tokens, seconds
        # columns[suite][name] = {unit_id: value}: per-item values a suite's statistics read (names start with "_")
        self.columns: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
        self.suite_seconds: dict[str, float] = defaultdict(float)  # generation share + scoring, per suite
        self.peak_rss_mb = 0.0
        self.info: dict[str, Any] = {}
        self.logprobs_cached = (0, 0)  # (found in the log-prob cache, looked up)

    def add(self, suite: str, item: Item, scores: dict) -> None:
        weight = scores.pop("_weight", None)
        for name in [k for k in scores if k.startswith("_")]:
            self.columns[suite][name][item.unit] = float(scores.pop(name))
        for metric, value in scores.items():
            if isinstance(value, list):
                for j, v in enumerate(value):
                    self.units[suite][metric][f"{item.unit}#{j}"] = float(v)
            elif value is not None:  # None: not scored (an instrument verdict that errored; listed in skipped)
                self.units[suite][metric][item.unit] = float(value)
                if weight is not None:
                    self.weights[suite][metric][item.unit] = weight


def _logprob_backend(entry, loaded, backend, suites: list[str], config, progress: bool, label: str):
    """(the LlamaCppBackend that scores the multiple-choice ``suites``, or None for the hf model; what results.json
    records about it). ``generation.logprob_backend``: hf; llamacpp (the generation backend when it is llamacpp,
    else a GGUF loaded for this); auto = the generation backend when it is llamacpp with f16 or f32 weights, else
    hf (f16 gave fp32's answer on every item measured; q8_0 changed a few: docs/benchmarks.md)."""
    if not suites:
        return None, None
    choice = config.generation.logprob_backend
    hf = {"backend": "hf", "quant": "fp32", "suites": ", ".join(suites)}
    via_llama = f"{', '.join(suites)} (the loss, if run: hf fp32)"
    if choice == "hf":
        return None, hf
    is_llama = backend is not None and backend.name == "llamacpp"
    if choice == "auto":
        if is_llama and backend.info.quant in ("f16", "f32"):
            return backend, {**backend.info.as_dict(), "suites": via_llama,
                             "note": f"auto: llamacpp (the generation backend, at {backend.info.quant})"}
        why = (f"the generation GGUF is {backend.info.quant}; log-probs are scored through llama.cpp at f16 or f32 only"
               if is_llama else "the generation backend is not llamacpp")
        return None, {**hf, "note": f"auto: hf ({why})"}
    if is_llama:
        return backend, {**backend.info.as_dict(), "suites": via_llama}
    from tunelens.generate.backends import load_backend

    lp = load_backend(entry.spec, "llamacpp", quant=config.generation.quant, loaded=loaded, progress=progress,
                      say=(lambda line: print(f"{label}: {line}", file=sys.stderr)) if progress else None)
    return lp, {**lp.info.as_dict(), "suites": via_llama}


def _run_model(entry, suites: list[Suite], items: dict[str, list[Item]], ctx: SuiteContext,
               progress: bool) -> ModelRun:
    from tunelens.generate import context_limit
    from tunelens.models import load_model, model_fingerprint

    config, label = ctx.config, entry.label
    run = ModelRun(label)
    with PeakRSS() as rss:
        loaded = load_model(entry.spec)
        fingerprint = model_fingerprint(loaded.path)
        g = config.generation
        generative = [it for s in suites if s.generative for it in items[s.name]]
        backend = None
        if generative:
            from tunelens.generate.backends import load_backend

            backend = load_backend(entry.spec, g.backend, quant=g.quant, loaded=loaded, progress=progress,
                                   say=(lambda line: print(f"{label}: {line}", file=sys.stderr)) if progress else None)
            if backend.name == "hf":
                loaded.model = backend.model  # an adapter is merged: same function, no LoRA matmuls
        if backend is None or backend.name != "hf":
            from tunelens.generate.backends import merged_model

            # The log-prob suites (TruthfulQA, BBQ, loss) run on the merged weights with every backend,
            # as they do with hf: unmerged LoRA matmuls made them 20-33% slower in the default run.
            loaded.model = merged_model(loaded.model)
        run.info = {"spec": entry.spec, "model_id": loaded.model_id, "revision": loaded.revision,
                    "path": str(loaded.path), "fingerprint": fingerprint, "context_length": context_limit(loaded.model),
                    "generation_backend": backend.info.as_dict() if backend is not None else None}
        params_key = {"max_new_tokens": g.max_new_tokens, "temperature": g.temperature, "top_p": g.top_p,
                      "seed": config.seed, "stop": list(g.stop)}
        if backend is not None and backend.name != "hf":
            # Answers of different backends / quantisations / GGUF files are never mixed; hf keeps
            # its key of old, so existing caches stay valid.
            params_key["backend"] = backend.info.cache_key()
        cache = GenerationCache(_cache_root(config), fingerprint, params_key, enabled=config.use_cache)
        outputs = _generate_all(loaded, backend, generative, config, cache, label, progress)
        lp_backend, run.info["logprob_backend"] = _logprob_backend(
            entry, loaded, backend, [s.name for s in suites if s.continuations], config, progress, label)
        if backend is not None and backend.name != "hf":
            if backend is lp_backend:
                backend.free_generation_context()  # the model stays, to score the multiple-choice suites
            else:
                backend.close()
        ctx.logprob_backend = lp_backend
        ctx.backend_logprob_cache = None if lp_backend is None else LogprobCache(
            _cache_root(config), fingerprint, enabled=config.use_cache, engine_key=lp_backend.info.cache_key())
        run.generations = list({o["rendered"]: o for o in outputs.values() if o["finish_reason"] != "too_long"}.values())
        ctx.logprob_cache = LogprobCache(_cache_root(config), fingerprint, enabled=config.use_cache)
        for suite in suites:
            t0 = time.perf_counter()
            if not suite.generative:
                for item, scores, extra in suite.run(loaded, items[suite.name], ctx, label):
                    shown = {k: v for k, v in scores.items() if not k.startswith("_")}
                    run.add(suite.name, item, dict(scores))
                    run.samples.append({"model": label, "suite": suite.name, "item_id": item.id, "variant": item.variant,
                                        "prompt": item.prompt, "rendered_prompt": None, "output": None,
                                        "reference": None, "scores": shown, **extra})
                run.suite_seconds[suite.name] += time.perf_counter() - t0
                continue
            ran = []
            for item in items[suite.name]:
                out = outputs[item.id]
                if out["finish_reason"] == "too_long":
                    ctx.skipped.append({"model": label, "suite": suite.name, "item_id": item.id,
                                        "reason": out.get("error") or "prompt longer than the context"})
                    continue
                ran.append(item)
            all_scores = suite.score_all(ran, [outputs[item.id]["text"] for item in ran], ctx)
            _note_unscored(ctx, label, suite.name, ran, [outputs[item.id]["text"] for item in ran], all_scores)
            for item, scores in zip(ran, all_scores):
                out = outputs[item.id]
                run.suite_seconds[suite.name] += out["seconds"]
                run.add(suite.name, item, dict(scores))
                scores = {k: v for k, v in scores.items() if not k.startswith("_")}
                run.item_costs[(suite.name, item.unit, item.variant)] = {
                    "tokens": out["prompt_tokens"] + out["completion_tokens"], "prompt_tokens": out["prompt_tokens"],
                    "completion_tokens": out["completion_tokens"], "seconds": out["seconds"], "cached": out["cached"]}
                run.samples.append({
                    "model": label, "suite": suite.name, "item_id": item.id, "variant": item.variant,
                    "prompt": item.prompt, "rendered_prompt": out["rendered"], "output": out["text"],
                    "reference": item.reference if isinstance(item.reference, (str, int, float)) else None,
                    "scores": scores, "finish_reason": out["finish_reason"], "prompt_tokens": out["prompt_tokens"],
                    "completion_tokens": out["completion_tokens"], "latency_s": out["latency_s"],
                    "cached": out["cached"]})
            for metric, per_unit in suite.derived(_by_unit(run.units[suite.name])).items():
                run.units[suite.name][metric].update(per_unit)
            run.suite_seconds[suite.name] += time.perf_counter() - t0  # scoring (generation is counted per item)
        found = ctx.logprob_cache.hits + (ctx.backend_logprob_cache.hits if ctx.backend_logprob_cache else 0)
        missed = ctx.logprob_cache.misses + (ctx.backend_logprob_cache.misses if ctx.backend_logprob_cache else 0)
        run.logprobs_cached = (found, found + missed)
        ctx.logprob_cache = ctx.backend_logprob_cache = ctx.logprob_backend = None
        if lp_backend is not None:
            lp_backend.close()
        if "toxicity" in items:
            _score_all_outputs(run, ctx)
        del loaded
        gc.collect()
    run.peak_rss_mb = rss.peak_mb
    return run


def _note_unscored(ctx: SuiteContext, label: str, suite: str, items: list[Item], texts: list[str],
                   all_scores: list[dict]) -> None:
    """List in ``skipped`` every item a metric of which was not scored (its instrument's verdict
    errored, e.g. an LLM judge that failed or could not be parsed twice), with the error."""
    from tunelens.evaluate.instruments import unscored

    errors = {u["reply"]: u for u in unscored()}
    for item, text, scores in zip(items, texts, all_scores):
        missing = sorted(k for k, v in scores.items() if v is None and "/" not in k)
        if missing:
            err = errors.get(text[:200], {})
            why = err.get("error") or "the instrument gave no verdict"
            raw = f" (its answer: {err['raw_answer']!r})" if err.get("raw_answer") else ""
            ctx.skipped.append({"model": label, "suite": suite, "item_id": item.id,
                                "reason": f"{', '.join(missing)} not scored: {err.get('task', 'instrument')} {why}{raw}"})


def _score_all_outputs(run: ModelRun, ctx: SuiteContext) -> None:
    """Toxicity of every generation of the run (all suites), not only the tweet replies."""
    generated = [s for s in run.samples if s.get("output") is not None]
    if not generated:
        return
    scorer = ctx.toxicity_scorer()
    for sample, value in zip(generated, scorer.score([s["output"] for s in generated])):
        sample["toxicity"] = value
        run.units["toxicity"]["toxic_rate_all_outputs"][sample["item_id"]] = float(value >= scorer.threshold)


def _by_unit(suite_units: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for metric, per_unit in suite_units.items():
        for unit, value in per_unit.items():
            out[unit][metric] = value
    return out


def _results(run: ModelRun, suites: list[Suite], config: EvalConfig) -> dict:
    out: dict[str, dict] = {}
    for suite in suites:
        metrics: dict[str, dict] = {}
        for metric in sorted(run.units[suite.name]):
            per_unit = run.units[suite.name][metric]
            units = sorted(per_unit)
            weights = run.weights[suite.name].get(metric)
            w = [weights[u] for u in units] if weights else None
            metrics[metric] = _metric([per_unit[u] for u in units], w, config)
        metrics.update(_statistics(run, suite, config))
        for metric, entry in metrics.items():
            task = suite.instrument_task(metric)
            per_unit = run.units[suite.name].get(metric)
            if task and per_unit:
                from tunelens.evaluate.instruments import rate_with_error

                values = list(per_unit.values())
                if all(v in (0.0, 1.0) for v in values):
                    entry["instrument"] = rate_with_error(int(sum(values)), len(values), task, seed=config.seed,
                                                          model_id=run.info.get("model_id"))
        if "loss" in metrics:
            loss = metrics["loss"]
            metrics["perplexity"] = {"value": math.exp(loss["value"]),
                                     "ci": [math.exp(x) for x in loss["ci"]] if loss["ci"] else None, "n": loss["n"]}
        out[suite.name] = metrics
    return out


def _columns(run: ModelRun, suite: str, units: list[str]) -> dict[str, list[float]]:
    cols = run.columns[suite]
    return {name: [cols[name].get(u, 0.0) for u in units] for name in cols}


def _statistics(run: ModelRun, suite: Suite, config: EvalConfig) -> dict[str, dict]:
    """The suite's non-mean statistics (e.g. BBQ bias scores), each with a bootstrap CI over items."""
    fns = suite.statistics()
    if not fns or not run.columns[suite.name]:
        return {}
    units = sorted({u for col in run.columns[suite.name].values() for u in col})
    cols = _columns(run, suite.name, units)
    return {name: stats.statistic_ci(cols, fn, n_resamples=config.bootstrap_resamples, seed=config.seed)
            for name, fn in fns.items()}


def _cost(run: ModelRun) -> dict:
    gens = run.generations
    prompt = sum(g["prompt_tokens"] for g in gens)
    completion = sum(g["completion_tokens"] for g in gens)
    # Cached generations keep the timings of the run that produced them (maybe another machine or
    # load), so speed and latency come from this run's fresh generations whenever there are any.
    fresh = [g for g in gens if not g["cached"]]
    timed = fresh or gens
    seconds = sum(g["seconds"] for g in timed)
    timed_tokens = sum(g["completion_tokens"] for g in timed)
    latencies = np.array([g["latency_s"] for g in timed]) if timed else np.array([0.0])
    return {"prompt_tokens": prompt, "completion_tokens": completion, "generations": len(gens),
            "cached_generations": len(gens) - len(fresh), "generation_seconds": round(seconds, 3),
            "speed_source": "this run" if fresh else "cache (timings of the run that generated them)",
            "tokens_per_s": round(timed_tokens / seconds, 2) if seconds > 0 else None,
            "latency_p50_s": round(float(np.percentile(latencies, 50)), 4),
            "latency_p95_s": round(float(np.percentile(latencies, 95)), 4),
            "peak_rss_mb": round(run.peak_rss_mb, 1),
            # log-probabilities (TruthfulQA, BBQ, loss) read back from the cache, of all looked up
            "cached_logprobs": {"found": run.logprobs_cached[0], "looked_up": run.logprobs_cached[1]},
            "suite_seconds": {k: round(v, 2) for k, v in run.suite_seconds.items()}}


def _fewshot_vs_zeroshot(runs: list[ModelRun], suites: list[Suite], config: EvalConfig) -> dict[str, dict | None]:
    """Per suite with a k-shot variant: k-shot prompting of the first model against zero-shot of the last."""
    k = config.few_shot.k
    out: dict[str, dict | None] = {}
    for suite in suites:
        if not config.few_shot_for(suite.name):
            continue
        metrics = (suite.accuracy_metric(f"{k}shot"), suite.accuracy_metric("0shot"))
        out[suite.name] = fewshot.compare(runs[0], runs[-1], suite.name, metrics, k, config)
    return out


def _comparisons(runs: list[ModelRun], suites: list[Suite], config: EvalConfig, results: dict) -> list[dict]:
    out = []
    by_label = {r.label: r for r in runs}
    for a, b in ((by_label[x], by_label[y]) for x, y in config.pairs()):
        for suite in suites:
            for metric in sorted(set(a.units[suite.name]) & set(b.units[suite.name])):
                ua, ub = a.units[suite.name][metric], b.units[suite.name][metric]
                common = sorted(set(ua) & set(ub))
                if not common:
                    continue
                weights = a.weights[suite.name].get(metric)
                w = [weights[u] for u in common] if weights else None
                hib = suite.higher_is_better(metric)
                res = stats.paired_bootstrap([ua[u] for u in common], [ub[u] for u in common], w,
                                             n_resamples=config.bootstrap_resamples, seed=config.seed,
                                             higher_is_better=hib)
                out.append({"suite": suite.name, "metric": metric, "a": a.label, "b": b.label,
                            "value_a": results[a.label][suite.name][metric]["value"],
                            "value_b": results[b.label][suite.name][metric]["value"],
                            **res, "higher_is_better": hib})
            fns = suite.statistics()
            if fns and a.columns[suite.name] and b.columns[suite.name]:
                common = sorted({u for c in a.columns[suite.name].values() for u in c}
                                & {u for c in b.columns[suite.name].values() for u in c})
                ca, cb = _columns(a, suite.name, common), _columns(b, suite.name, common)
                for name, fn in fns.items():
                    if name not in results[a.label][suite.name] or name not in results[b.label][suite.name]:
                        continue
                    hib = suite.higher_is_better(name)
                    res = stats.paired_statistic(ca, cb, fn, n_resamples=config.bootstrap_resamples, seed=config.seed,
                                                 higher_is_better=hib)
                    out.append({"suite": suite.name, "metric": name, "a": a.label, "b": b.label,
                                "value_a": results[a.label][suite.name][name]["value"],
                                "value_b": results[b.label][suite.name][name]["value"],
                                **res, "higher_is_better": hib})
    return out


def evaluate(config: EvalConfig, progress: bool = True) -> dict:
    """Evaluate ``config.models`` on ``config.suites``; write and return the results dict."""
    if not isinstance(config, EvalConfig):
        raise TunelensError("evaluate() takes an EvalConfig")
    from tunelens.evaluate.instruments import using

    with using(config.instruments, judge=config.judge):  # the safety rates' instruments (each task's default unless chosen)
        if config.judge is not None:  # a dead endpoint or a card of another judge model fails before any generation
            from tunelens.evaluate.instruments import describe

            for task in config.judge.tasks:
                describe(task)
        return _evaluate(config, progress)


def _evaluate(config: EvalConfig, progress: bool) -> dict:
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = SuiteContext(config)
    registry = all_suites()
    suites = [registry[name]() for name in config.suites]
    # Build every suite before loading a model: a missing data file fails in seconds, not after generation.
    items = {s.name: s.build(ctx) for s in suites}
    # Likewise a model that cannot be found fails before the first model spends minutes generating.
    from tunelens.models import resolve_model

    for entry in config.models:
        resolve_model(entry.spec, progress=progress)
    runs = []
    for entry in config.models:
        runs.append(_run_model(entry, suites, items, ctx, progress))
    results = {run.label: _results(run, suites, config) for run in runs}
    cost: dict[str, Any] = {run.label: _cost(run) for run in runs}
    if any(config.few_shot_for(s.name) for s in suites):
        cost["fewshot_vs_zeroshot"] = _fewshot_vs_zeroshot(runs, suites, config)
    report = {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": json.loads(config.model_dump_json()),
        "versions": _versions(),
        "models": {run.label: run.info for run in runs},
        "results": results,
        "comparisons": _comparisons(runs, suites, config, results),
        "cost": cost,
        "skipped": ctx.skipped,
        "files": {"samples": "samples.jsonl", "report": "report.html"},
    }
    with (out_dir / "samples.jsonl").open("w", encoding="utf-8") as fh:
        for run in runs:
            for sample in run.samples:
                fh.write(json.dumps(sample, ensure_ascii=False) + "\n")
    from tunelens.evaluate.lm_eval_format import write_lm_eval

    # lm-evaluation-harness's results shape, one file per model (docs/results-schema.md)
    report["files"]["lm_eval"] = write_lm_eval(report, out_dir)
    (out_dir / "results.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    from tunelens.evaluate.report import write_report

    write_report(report, [s for run in runs for s in run.samples], out_dir / "report.html")
    return report
