"""SFT alone, RL alone and SFT then RL on the embedded default (issue: does RL from verifiable
rewards generalise where SFT memorises?).

The SFT arm is the default run's own training (``benchmarks/default_mix.py --train mix_a`` writes
``runs/mix-mix_a/``). ``--train rl sft_rl`` runs the rl stage's GRPO (the run's ``rl`` section,
the same code as ``tunelens run`` with ``rl.enabled``) on the suite's train prompts the SFT arm used:

- ``rl``: GRPO from the base model;
- ``sft_rl``: GRPO from the SFT adapter (one adapter on the base holding SFT + RL).

``--evaluate`` scores base, sft, rl and sft_rl on the same items with the run's suites in one
evaluation, each compared with base, and sft_rl with sft (what RL added), paired; it writes
``runs/rl-table.md`` and ``.json``.

    .venv/bin/python benchmarks/default_mix.py --train mix_a            # the SFT arm, if not there
    .venv/bin/python benchmarks/rl_vs_sft.py --train rl sft_rl --max-steps 12
    .venv/bin/python benchmarks/rl_vs_sft.py --evaluate --limit 150
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console

SFT_RUN = "mix-mix_a"
ARMS = ("rl", "sft_rl")


def _sft_config(extra: dict | None = None):
    from tunelens.pipeline.config import load_run_config

    sys.path.insert(0, str(Path(__file__).parent))
    from default_mix import MIXES

    return load_run_config(None, {"name": SFT_RUN, **MIXES["mix_a"], **(extra or {})})


def train(arms: list[str], overrides: dict, tag: str = "", prompts_file: str | None = None) -> None:
    from tunelens.pipeline import stages
    from tunelens.pipeline.config import rl_config
    from tunelens.train import train as run_train

    console = Console()
    config = _sft_config(overrides)
    ctx = stages.Context(config=config, dir=config.directory(), progress=False, console=console)
    sft = stages.tuned_model_dir(ctx)  # runs/mix-mix_a/train/adapter
    prompts = Path(prompts_file) if prompts_file else ctx.sub("suite") / "train_used.jsonl"
    if not prompts.is_file():
        raise SystemExit(f"{prompts} not found: run benchmarks/default_mix.py --train mix_a first")
    for arm in arms:
        start = config.model if arm == "rl" else str(sft)
        out = Path("runs") / f"rl-{arm}{tag}"
        cfg = rl_config(config, start, [str(prompts)], out)
        console.rule(f"{arm}: GRPO from {start}, {cfg.max_steps} steps")
        t0 = time.perf_counter()
        result = run_train(cfg, progress=True)
        wall = time.perf_counter() - t0
        summary = json.loads((out / "train_summary.json").read_text(encoding="utf-8"))
        row = {"arm": arm + tag, "from": "sft" if arm == "sft_rl" else "base", "start": start, "prompts": str(prompts), "overrides": overrides, "steps": result.steps, "wall_s": round(wall, 1),
               "reward_first_steps": summary.get("reward_first_steps"),
               "reward_last_steps": summary.get("reward_last_steps"), "adapter": str(result.adapter_dir)}
        (out / "arm.json").write_text(json.dumps(row, indent=2, default=str) + "\n")
        console.print(row)


def evaluate(limit: int, suites: list[str], arms: list[str] | None = None, out: str = "rl") -> None:
    from tunelens.config_files import validate
    from tunelens.evaluate import EvalConfig, evaluate as run_eval
    from tunelens.pipeline import stages

    console = Console()
    config = _sft_config()  # puts benchmarks/ on sys.path
    from default_mix import narrow

    ctx = stages.Context(config=config, dir=config.directory(), progress=True, console=console)
    values = stages.eval_config(ctx).model_dump(mode="json")
    models = [{"spec": config.model, "label": "base"}, {"spec": str(stages.tuned_model_dir(ctx)), "label": "sft"}]
    pairs = [["base", "sft"]]
    for info in sorted(Path("runs").glob("rl-*/arm.json")):
        arm = json.loads(info.read_text(encoding="utf-8"))
        if arms and arm["arm"] not in arms:
            continue
        if (info.parent / "adapter").is_dir():
            models.append({"spec": str(info.parent / "adapter"), "label": arm["arm"]})
            pairs.append(["base", arm["arm"]])
            if arm.get("from") == "sft":  # what RL added on top of SFT
                pairs.append(["sft", arm["arm"]])
    values.update(models=models, comparisons=pairs, output_dir=f"runs/{out}-eval")
    narrow(values, suites, limit)
    cfg = validate(EvalConfig, values, "eval config", "benchmarks/rl_vs_sft.py")
    t0 = time.perf_counter()
    results = run_eval(cfg, progress=True)
    wall = time.perf_counter() - t0
    keep = set(config.evaluate.guards) | {"harmful/refusal_rate", "ifeval/inst_level_loose_acc"}
    rows = []
    for c in results.get("comparisons", []):
        key = f"{c['suite']}/{c['metric']}"
        if keep and key not in keep and c["suite"] != "builtin":
            continue
        rows.append({"a": c["a"], "b": c["b"], "metric": key, "value_a": c["value_a"], "value_b": c["value_b"],
                     "diff": c.get("delta"), "ci": c.get("ci"), "significant": c.get("significant")})
    Path(f"runs/{out}-table.json").write_text(json.dumps({"wall_s": wall, "rows": rows}, indent=2, default=str) + "\n")
    fmt = lambda v: "n/a" if v is None else f"{v:+.3f}"  # noqa: E731
    lines = ["| metric | a | b | a value | b value | b - a [95% CI] |", "| --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: (r["metric"], r["a"], r["b"])):
        ci = r["ci"] or [None, None]
        lines.append(f"| {r['metric']} | {r['a']} | {r['b']} | {r['value_a']:.3f} | {r['value_b']:.3f} | "
                     f"{fmt(r['diff'])} [{fmt(ci[0])}, {fmt(ci[1])}]{' *' if r['significant'] else ''} |")
    Path(f"runs/{out}-table.md").write_text("\n".join(lines) + "\n")
    console.print("\n".join(lines))
    console.print(f"evaluation wall time {wall:.0f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", nargs="*", default=[], help=f"arms to train: {', '.join(ARMS)}")
    ap.add_argument("--max-steps", type=int, default=None, help="GRPO steps (default: the run's rl.max_steps)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="more run-config overrides (rl.*)")
    ap.add_argument("--prompts", default=None, help="GRPO prompts file (default: the suite train split SFT used, "
                    "runs/mix-mix_a/suite/train_used.jsonl; runs/mix-mix_a/suite/train.jsonl adds the safety family)")
    ap.add_argument("--tag", default="", help="suffix of the arms' names and folders (runs/rl-<arm><tag>)")
    ap.add_argument("--evaluate", action="store_true")
    ap.add_argument("--arms", default="", help="comma-separated arms to evaluate beside base and sft (default: every trained one)")
    ap.add_argument("--out", default="rl", help="runs/<out>-eval, runs/<out>-table.md (default: rl)")
    ap.add_argument("--limit", type=int, default=150)
    ap.add_argument("--suites", default="", help="comma-separated suites (default: the run's)")
    args = ap.parse_args(argv)
    unknown = [a for a in args.train if a not in ARMS]
    if unknown:
        print(f"unknown arm(s) {unknown}: choose from {list(ARMS)}", file=sys.stderr)
        return 2
    overrides: dict = {}
    if args.max_steps:
        overrides["rl.max_steps"] = args.max_steps
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    if args.train:
        train(args.train, overrides, args.tag, args.prompts)
    if args.evaluate:
        evaluate(args.limit, [s for s in args.suites.split(",") if s], [a for a in args.arms.split(",") if a], args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
