"""Our results in lm-evaluation-harness's results shape, one file per model.

``to_lm_eval(report)`` turns a ``results.json`` dict (any ``tunelens.eval/*`` version) into one
dict per model label with the keys lm-eval's ``simple_evaluate`` returns and its
``EvaluationTracker`` writes (checked against a file lm-eval 0.4.13 wrote,
``tests/data/lm_eval_results_0.4.13.json``, and read back with ``lm_eval.utils.make_table``):
``results`` ({task: {"name", "alias", "sample_len", "metric,none": value, "metric_stderr,none":
stderr}}), ``group_subtasks``, ``configs``, ``versions``, ``n-shot``, ``higher_is_better``,
``n-samples`` ({task: {"original", "effective"}}), ``config`` (model, model_args, batch_size, ...),
``git_hash``, ``date`` (UNIX time), ``model_source``, ``model_name``, ``model_name_sanitized``,
``transformers_version``, ``total_evaluation_time_seconds``.

``write_lm_eval(report, out_dir)`` writes them as lm-eval lays them out:
``<out_dir>/lm-eval/<label>/results_<date>.json`` (lm-eval: ``<output_path>/<model>/results_<date>.json``).

How our numbers map (docs/results-schema.md, "lm-eval-harness export"): a suite is a task, each of
its metrics a ``metric,none`` key (filter ``none``; a k-shot variant keeps its own metric name such
as ``exact_match_5shot``, so ``n-shot`` is 0). lm-eval's stderr is a standard error; ours is a 95%
bootstrap interval, so ``stderr`` = (hi - lo) / (2 x 1.96), and ``"N/A"`` (lm-eval's own word)
where there is no interval. ``versions`` holds the tunelens version (our suites ship with it).
``n-samples.original`` is the number of items scored: results.json does not record a suite's size
before ``--limit``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

Z95 = 1.959963984540054  # two-sided 95% normal quantile

FILTER = "none"


def _stderr(entry: dict[str, Any]) -> float | str:
    ci = entry.get("ci")
    if not ci or ci[0] is None or ci[1] is None:
        return "N/A"
    return (float(ci[1]) - float(ci[0])) / (2 * Z95)


def _hib(suite: str, metric: str) -> bool | None:
    from tunelens.evaluate.suites import all_suites

    cls = all_suites().get(suite)
    return None if cls is None else bool(cls().higher_is_better(metric))


def sanitize(name: str) -> str:
    """lm-eval's model_name_sanitized: path separators and odd characters become '__'."""
    return re.sub(r'[\"<>:/|\\?*\[\]]+', "__", name)


def _date(report: dict[str, Any]) -> float:
    try:
        return datetime.fromisoformat(report["created"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return datetime.now(timezone.utc).timestamp()


def model_results(report: dict[str, Any], label: str) -> dict[str, Any]:
    """One model's results in lm-eval's shape."""
    config = report.get("config") or {}
    gen = config.get("generation") or {}
    info = (report.get("models") or {}).get(label, {})
    versions = report.get("versions") or {}
    results, configs, hib, n_samples, n_shot = {}, {}, {}, {}, {}
    for suite, metrics in (report.get("results") or {}).get(label, {}).items():
        task: dict[str, Any] = {"name": suite, "alias": suite}
        n = 0
        hib[suite] = {}
        for metric, entry in metrics.items():
            if not isinstance(entry, dict) or "value" not in entry:
                continue
            task[f"{metric},{FILTER}"] = entry["value"] if entry["value"] is not None else "N/A"
            task[f"{metric}_stderr,{FILTER}"] = _stderr(entry)
            hib[suite][metric] = _hib(suite, metric)
            n = max(n, int(entry.get("n") or 0))
        task["sample_len"] = n
        results[suite] = task
        n_samples[suite] = {"original": n, "effective": n}
        n_shot[suite] = 0
        configs[suite] = {
            "task": suite, "tag": ["tunelens"], "output_type": "generate_until", "num_fewshot": 0,
            "generation_kwargs": {"max_gen_toks": gen.get("max_new_tokens"), "temperature": gen.get("temperature"),
                                  "top_p": gen.get("top_p"), "do_sample": bool(gen.get("temperature"))},
            "metric_list": [{"metric": m, "higher_is_better": h} for m, h in hib[suite].items()],
            "metadata": {"version": versions.get("tunelens"), "source": "tunelens", "schema": report.get("schema")},
        }
    name = info.get("model_id") or info.get("spec") or label
    cost = (report.get("cost") or {}).get(label) or {}
    seed = config.get("seed")
    few = config.get("few_shot") or {}
    return {
        "results": results,
        "group_subtasks": {},
        "configs": configs,
        "versions": {suite: versions.get("tunelens") for suite in results},
        "n-shot": n_shot,
        "higher_is_better": hib,
        "n-samples": n_samples,
        "config": {
            "model": "tunelens", "model_args": f"pretrained={info.get('spec') or name}",
            "model_revision": info.get("revision"), "batch_size": gen.get("batch_size"), "batch_sizes": [],
            "device": None, "use_cache": config.get("use_cache"), "limit": config.get("limit"),
            "bootstrap_iters": config.get("bootstrap_resamples"),
            "gen_kwargs": {k: gen.get(k) for k in ("max_new_tokens", "temperature", "top_p") if k in gen} or None,
            "random_seed": seed, "numpy_seed": seed, "torch_seed": seed, "fewshot_seed": few.get("seed"),
        },
        "git_hash": None,
        "date": _date(report),
        "transformers_version": versions.get("transformers"),
        "model_source": "tunelens",
        "model_name": name,
        "model_name_sanitized": sanitize(name),
        "total_evaluation_time_seconds": str(cost.get("generation_seconds", "")),
        "tunelens": {"label": label, "schema": report.get("schema"), "fingerprint": info.get("fingerprint")},
    }


def to_lm_eval(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{model label: that model's results in lm-eval's shape}."""
    return {label: model_results(report, label) for label in (report.get("results") or {})}


def write_lm_eval(report: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """Write ``lm-eval/<label>/results_<date>.json`` per model; {label: path relative to out_dir}."""
    out_dir = Path(out_dir)
    stamp = datetime.fromtimestamp(_date(report), timezone.utc).strftime("%Y-%m-%dT%H-%M-%S.%f")
    written = {}
    for label, body in to_lm_eval(report).items():
        folder = out_dir / "lm-eval" / sanitize(label)
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("results_*.json"):  # one results file per model: a rerun replaces it
            old.unlink()
        path = folder / f"results_{stamp}.json"
        path.write_text(json.dumps(body, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        written[label] = str(path.relative_to(out_dir))
    return written
