"""Measure training mixes for the default run before choosing one (issue: the default must follow
instructions better without becoming over-cautious).

Each mix is a set of run-config overrides. For each, the run's own curate and train stages run into
``runs/mix-<name>/`` (the same code as ``tunelens run``), then ``--evaluate`` scores base and every
trained adapter on the same items with the run's evaluation suites and writes one table
(``runs/mix-table.md`` and ``.json``): each guard metric, tuned − base with its paired CI.

    .venv/bin/python benchmarks/default_mix.py --train suite_only mix_a mix_b
    .venv/bin/python benchmarks/default_mix.py --evaluate suite_only mix_a mix_b --limit 150
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console

MIXES: dict[str, dict] = {
    # today's default: the built-in suite only (its safety family has one refusal template)
    "suite_only": {},
    # the suite without its safety family, plus real refusals, look-alikes and instructions
    "mix_a": {"suite.exclude_families": ["safety"],
              "data.mix": {"refusals": 85, "lookalikes": 300, "alpaca": 300, "self_instruct": 100}},
    # the whole suite plus the same real data
    "mix_b": {"data.mix": {"refusals": 85, "lookalikes": 300, "alpaca": 300, "self_instruct": 100}},
    # mix_a with more look-alikes than refusals and twice the steps (the mix is ~1.4k records)
    "mix_c": {"suite.exclude_families": ["safety"], "train.max_steps": 200,
              "data.mix": {"refusals": 85, "lookalikes": 325, "alpaca": 400, "self_instruct": 150}},
}


def _config(name: str, extra: dict):
    from tunelens.pipeline.config import load_run_config

    overrides = {"name": f"mix-{name}", **MIXES[name], **extra}
    return load_run_config(None, overrides)


def train(names: list[str], extra: dict) -> None:
    from tunelens.pipeline import stages

    console = Console()
    for name in names:
        config = _config(name, extra)
        ctx = stages.Context(config=config, dir=config.directory(), progress=False, console=console)
        ctx.dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        console.rule(f"{name}: curate")
        cur = stages.run_curate(ctx)
        console.rule(f"{name}: train")
        tr = stages.run_train(ctx)
        wall = time.perf_counter() - t0
        out = {"mix": name, "overrides": MIXES[name], "curate": cur, "train": tr, "wall_s": round(wall, 1)}
        (ctx.dir / "mix_train.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
        console.print(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", nargs="*", default=[], help=f"mixes to train: {', '.join(MIXES)}")
    ap.add_argument("--evaluate", nargs="*", default=[], help="mixes to evaluate (after --train)")
    ap.add_argument("--limit", type=int, default=150)
    ap.add_argument("--suites", default="", help="comma-separated suites (default: the run's)")
    args = ap.parse_args(argv)
    unknown = [n for n in args.train + args.evaluate if n not in MIXES]
    if unknown:
        print(f"unknown mix(es) {unknown}: choose from {list(MIXES)}", file=sys.stderr)
        return 2
    if args.train:
        train(args.train, {})
    if args.evaluate:
        evaluate(args.evaluate, args.limit, [s for s in args.suites.split(",") if s])
    return 0


def narrow(values: dict, suites: list[str], limit: int) -> None:
    """A dumped run eval config, narrowed to ``suites`` (if any) and at most ``limit`` items per suite."""
    # A dumped config names its defaults explicitly; few-shot's default (gsm8k, "when it runs") must not
    # become an explicit request for a suite the run does not select.
    values.pop("few_shot", None)
    if suites:
        values["suites"] = suites
        values["limits"] = {k: v for k, v in values.get("limits", {}).items() if k in suites}
    if limit:
        values["limits"] = {k: min(v, limit) for k, v in values.get("limits", {}).items()}


def evaluate(names: list[str], limit: int, suites: list[str]) -> None:
    """Base and every mix's adapter in one evaluation (each compared with base, paired), then the
    guard metrics of each as one table."""
    from tunelens.config_files import validate
    from tunelens.evaluate import EvalConfig, evaluate as run_eval
    from tunelens.pipeline import stages

    console = Console()
    first = _config(names[0], {})
    ctx = stages.Context(config=first, dir=first.directory(), progress=True, console=console)
    values = stages.eval_config(ctx).model_dump(mode="json")
    models = [{"spec": first.model, "label": "base"}]
    for name in names:
        cfg = _config(name, {})
        models.append({"spec": str(stages.tuned_model_dir(stages.Context(
            config=cfg, dir=cfg.directory(), progress=False, console=console))), "label": name})
    values.update(models=models, output_dir="runs/mix-eval")
    narrow(values, suites, limit)
    config = validate(EvalConfig, values, "eval config", "benchmarks/default_mix.py")
    t0 = time.perf_counter()
    results = run_eval(config, progress=True)
    wall = time.perf_counter() - t0
    guards = list(first.evaluate.guards) if hasattr(first.evaluate, "guards") else []
    rows = []
    for comp in results.get("comparisons", []):
        key = f"{comp['suite']}/{comp['metric']}"
        if guards and key not in guards and comp["suite"] not in ("builtin",):
            continue
        rows.append({"mix": comp["b"], "metric": key, "base": comp["value_a"], "tuned": comp["value_b"],
                     "diff": comp.get("delta"), "ci": comp.get("ci"), "significant": comp.get("significant")})
    Path("runs").mkdir(exist_ok=True)
    Path("runs/mix-table.json").write_text(json.dumps({"wall_s": wall, "rows": rows}, indent=2, default=str) + "\n")
    lines = ["| mix | metric | base | tuned | tuned - base [95% CI] |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        ci = r["ci"] or [None, None]
        fmt = lambda v: "n/a" if v is None else f"{v:+.3f}" if isinstance(v, float) else str(v)  # noqa: E731
        lines.append(f"| {r['mix']} | {r['metric']} | {r['base']:.3f} | {r['tuned']:.3f} | {fmt(r['diff'])} "
                     f"[{fmt(ci[0])}, {fmt(ci[1])}]{' *' if r['significant'] else ''} |")
    Path("runs/mix-table.md").write_text("\n".join(lines) + "\n")
    console.print("\n".join(lines))
    console.print(f"evaluation wall time {wall:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
