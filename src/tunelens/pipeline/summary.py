"""The closing summary: what changed between base and tuned, with CIs, read from the run's artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

# (suite, metric, label) rows, in the order the summary shows them.
EVAL_ROWS = [
    ("builtin", "pass_rate/test", "Instruction following, seen families (test split)"),
    ("builtin", "pass_rate/heldout", "Instruction following, held-out families"),
    ("builtin", "refusal_rate_harmful", "Refusal of harmful requests (suite)"),
    ("builtin", "over_refusal_rate_benign", "Over-refusal of benign look-alikes (suite)"),
    ("safety", "refusal_rate_harmful", "Refusal of harmful requests (AdvBench)"),
    ("safety", "over_refusal_rate_benign", "Over-refusal of benign prompts"),
    ("ifeval", "prompt_level_strict_acc", "IFEval prompt-level strict accuracy"),
    ("loss", "loss", "Loss per answer token (held-out answers)"),
]


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


# Below this many paired items a bootstrap CI is degenerate (n=2 all-wins gives [1, 1]): the verdict says so.
MIN_ITEMS_FOR_VERDICT = 10


def _verdict(comp: dict | None) -> str:
    if not comp:
        return "not compared"
    n = comp.get("n")
    few = f"; only {n} items, too few to conclude" if isinstance(n, int) and n < MIN_ITEMS_FOR_VERDICT else ""
    if not comp.get("significant"):
        return "no significant change" + (f" ({few[2:]})" if few else "")
    better = (comp.get("delta", 0) > 0) == comp.get("higher_is_better", True)
    return ("better (significant" if better else "worse (significant") + few + ")"


def _find(results: dict, suite: str, metric: str) -> dict | None:
    for c in results.get("comparisons") or []:
        if c.get("suite") == suite and c.get("metric") == metric and c.get("b") == "tuned":
            return c
    return None


def _train_loss(run_dir: Path) -> tuple[float, float, int] | None:
    path = run_dir / "train" / "metrics.jsonl"
    if not path.is_file():
        return None
    losses = [json.loads(line)["loss"] for line in path.read_text(encoding="utf-8").splitlines()
              if line.strip() and "loss" in json.loads(line)]
    if not losses:
        return None
    k = max(1, min(5, len(losses) // 4))
    return sum(losses[:k]) / k, sum(losses[-k:]) / k, len(losses)


def build_summary(run_dir: str | Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    results = _read(run_dir / "eval" / "results.json") or {}
    explain = _read(run_dir / "explain" / "explain.json") or {}
    state = _read(run_dir / "run.json") or {}
    train = _read(run_dir / "train" / "train_summary.json") or {}
    res = results.get("results") or {}
    rows = []
    for suite, metric, label in EVAL_ROWS:
        base = (res.get("base") or {}).get(suite, {}).get(metric)
        tuned = (res.get("tuned") or {}).get(suite, {}).get(metric)
        if base is None and tuned is None:
            continue
        comp = _find(results, suite, metric)
        rows.append({"what": label, "source": f"eval/results.json: {suite}/{metric}", "base": base, "tuned": tuned,
                     "delta": {"value": comp.get("delta"), "ci": comp.get("ci")} if comp else None,
                     "verdict": _verdict(comp)})
    focus = explain.get("instruction_focus")
    if focus:
        diff = focus.get("tuned - base") or {}
        ci = diff.get("ci")
        verdict = "no CI (too few items)" if not ci else (
            "more on the instruction (significant)" if ci[0] > 0 else
            "less on the instruction (significant)" if ci[1] < 0 else "no significant change")
        rows.append({"what": "Instruction focus (attribution share on the instruction)", "source": "explain/explain.json",
                     "base": focus.get("base"), "tuned": focus.get("tuned"), "delta": diff, "verdict": verdict})
    tl = _train_loss(run_dir)
    if tl:
        # Batches are length-grouped, so early and late steps see different kinds of examples: this row
        # shows the trajectory only; the held-out loss row above is the base-vs-tuned comparison.
        rows.append({"what": f"Training loss (first vs last logged steps, {tl[2]} logged)", "source": "train/metrics.jsonl",
                     "base": {"value": tl[0], "ci": None, "n": None}, "tuned": {"value": tl[1], "ci": None, "n": None},
                     "delta": {"value": tl[1] - tl[0], "ci": None},
                     "verdict": "trajectory only (length-grouped batches differ); compare the held-out loss"})
    cost = results.get("cost") or {}
    if "base" in cost and "tuned" in cost:
        b, t = cost["base"].get("tokens_per_s"), cost["tuned"].get("tokens_per_s")
        rows.append({"what": "Generation speed (tokens/s, eval)", "source": "eval/results.json: cost",
                     "base": {"value": b, "ci": None, "n": None}, "tuned": {"value": t, "ci": None, "n": None},
                     "delta": {"value": (t - b) if (b is not None and t is not None) else None, "ci": None},
                     "verdict": "one timing each, no CI (machine load varies)"})
    stage_times = {k: v.get("wall_s") for k, v in (state.get("stages") or {}).items() if v.get("wall_s") is not None}
    return {"rows": rows, "stage_wall_s": stage_times, "train": {k: train.get(k) for k in ("steps", "final_loss", "tokens_per_s", "wall_s")}}


def _fmt(entry: dict | None) -> str:
    if not entry or entry.get("value") is None:
        return "-"
    v = entry["value"]
    text = f"{v:.3f}" if isinstance(v, float) else str(v)
    ci = entry.get("ci")
    return text + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def summary_table(summary: dict[str, Any], title: str = "What changed: base vs tuned (95% CIs)") -> Table:
    table = Table(title=title, show_lines=False)
    for col, kw in (("measure", {}), ("base", {"justify": "right"}), ("tuned", {"justify": "right"}),
                    ("tuned - base", {"justify": "right"}), ("reading", {})):
        table.add_column(col, **kw)
    for row in summary["rows"]:
        verdict = row["verdict"]
        style = "green" if "better" in verdict or verdict.startswith("more") else "red" if "worse" in verdict else ""
        table.add_row(row["what"], _fmt(row["base"]), _fmt(row["tuned"]), _fmt(row["delta"]),
                      f"[{style}]{verdict}[/]" if style else verdict)
    times = summary.get("stage_wall_s") or {}
    if times:
        table.caption = "stage wall time: " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()) + \
                        f" (total {sum(times.values()):.0f}s)"
    return table
