"""The explain stage: base vs tuned instruction focus, heatmaps for a sample, faithfulness checks.

It picks suite items and lays out the run folder; the work is done by ``tunelens.explain.runs``
(the API behind `tunelens explain`): ``greedy_responses``, ``attribute_items`` (attributions,
heatmaps and the faithfulness check) and ``faithfulness_document`` (``faithfulness.json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def _entry(value: float, ci: list[float] | None, n: int) -> dict[str, Any]:
    ci_ok = ci is not None and not any(np.isnan(ci))
    return {"value": None if np.isnan(value) else float(value), "ci": list(map(float, ci)) if ci_ok else None, "n": n}


def pick_items(ctx, count: int, with_context: bool = True, families: set[str] | None = None) -> list[dict]:
    """Evaluation records (test then heldout), one family after another so a small sample is varied."""
    from tunelens.suite import eval_items

    c = ctx.config.suite
    records = eval_items(c.n, c.seed)
    if with_context:
        records = [r for r in records if r["meta"].get("context_span") is not None]
    if families is not None:
        records = [r for r in records if r["meta"]["family"] in families]
    by_family: dict[str, list[dict]] = {}
    for r in records:
        by_family.setdefault(r["meta"]["family"], []).append(r)
    out: list[dict] = []
    while len(out) < count and any(by_family.values()):
        for fam in sorted(by_family):
            if by_family[fam] and len(out) < count:
                out.append(by_family[fam].pop(0))
    return out


def _prompt_only(rec: dict) -> dict:
    return {**rec, "messages": [m for m in rec["messages"] if m["role"] != "assistant"]}


def _with_response(item: dict, response: str) -> dict:
    return {**item, "messages": item["messages"] + [{"role": "assistant", "content": response}]}


def _focus(ctx, base, tuned, items: list[dict], responses: dict[str, list[str]]) -> dict[str, Any]:
    """Paired base-vs-tuned instruction focus, each model on its own greedy response."""
    from tunelens.explain import instruction_focus
    from tunelens.explain.focus import paired_focus_difference

    e = ctx.config.explain
    keep = [k for k in range(len(items)) if responses["base"][k].strip() and responses["tuned"][k].strip()]
    skipped = [{"id": items[k]["id"], "reason": "empty response from base or tuned: nothing to attribute"}
               for k in range(len(items)) if k not in keep]
    if not keep:
        return {"skipped": skipped, "reading": "no item with a non-empty response from both models"}
    runs = {}
    for label, lm in (("base", base), ("tuned", tuned)):
        runs[label] = instruction_focus(lm.model, lm.tokenizer, [_with_response(items[k], responses[label][k]) for k in keep],
                                        e.method, seed=ctx.config.seed, progress=ctx.progress)
    diff = paired_focus_difference(runs["base"], runs["tuned"], seed=ctx.config.seed)
    return {
        "base": _entry(runs["base"]["mean"], runs["base"]["ci95"], runs["base"]["n"]),
        "tuned": _entry(runs["tuned"]["mean"], runs["tuned"]["ci95"], runs["tuned"]["n"]),
        "tuned - base": _entry(diff["difference_mean"], diff["difference_ci95"], diff["n"]),
        "length share (no preference)": round(float(runs["base"]["length_share_mean"]), 4),
        "reading": diff["reading"],
        "skipped": skipped,
        "_runs": runs,
    }


def explain_run(ctx, tuned_dir: Path) -> dict[str, Any]:
    from tunelens.explain import methods, rationale_faithfulness, render_diff_html
    from tunelens.explain.runs import attribute_items, faithfulness_document, greedy_responses, write_json
    from tunelens.models import load_model

    e = ctx.config.explain
    out = ctx.sub("explain")
    (out / "heatmaps").mkdir(parents=True, exist_ok=True)
    base = load_model(ctx.config.model)
    tuned = load_model(str(tuned_dir))
    result: dict[str, Any] = {"method": e.method, "n_items": 0}

    records = pick_items(ctx, max(e.focus_items, e.n_items))
    items = [_prompt_only(r) for r in records]
    ctx.console.print(f"  generating base and tuned responses for {len(items)} items")
    prompts = [i["messages"] for i in items]
    responses = {"base": greedy_responses(base, prompts, e.max_new_tokens),
                 "tuned": greedy_responses(tuned, prompts, e.max_new_tokens)}
    focus = _focus(ctx, base, tuned, items[: e.focus_items], responses)
    runs = focus.pop("_runs", None)
    result["instruction_focus"] = focus
    if runs:
        (out / "instruction_focus.json").write_text(json.dumps(runs, indent=2, default=float), encoding="utf-8")

    # Each model explains its own greedy response (the reference answer when that is empty).
    sample = records[: e.n_items]
    explained, sources = [], []
    for k, rec in enumerate(sample):
        own = {label: responses[label][k] for label in ("base", "tuned")}
        explained.append({**items[k], "responses": {label: r if r.strip() else rec["messages"][-1]["content"]
                                                    for label, r in own.items()}})
        sources.append({label: "model" if r.strip() else "reference (the model's response was empty)"
                        for label, r in own.items()})
    faith_options = {"ks": (0.1, 0.2), "n_random": 4, "seed": ctx.config.seed}
    done = attribute_items(
        [("base", base), ("tuned", tuned)], explained, method=e.method, out=out,
        heatmap_name=lambda label, k: f"heatmaps/item{k}_{label}.png", faithfulness_options=faith_options,
        skip_errors=False,
        on_item=lambda label, k, item: ctx.console.print(f"  attribution heatmaps ({label}) {k + 1}/{len(sample)}: {item['id']}"),
    )
    heatmaps = []
    for k, (rec, row) in enumerate(zip(sample, done.rows)):
        attrs = {"base": row["base_attribution"], "tuned": row["attribution"]}
        html = render_diff_html(attrs["base"], attrs["tuned"], title=f"{rec['meta']['family']}: {rec['id']}")
        (out / "heatmaps" / f"item{k}.html").write_text(html, encoding="utf-8")
        heatmaps.append({"id": rec["id"], "family": rec["meta"]["family"], "html": f"explain/heatmaps/item{k}.html",
                         "png": {lab: f"explain/heatmaps/item{k}_{lab}.png" for lab in attrs},
                         "response": {lab: a.response for lab, a in attrs.items()}, "response_source": sources[k]})
    result["n_items"] = len(heatmaps)
    result["heatmaps"] = heatmaps

    faith_rows = done.faithfulness
    if faith_rows:
        def mean(key: str) -> dict[str, Any]:
            return _entry(float(np.mean([r[key] for r in faith_rows])), None, len(faith_rows))

        result["faithfulness"] = {
            "comprehensiveness, top-attributed tokens (tuned)": mean("comprehensiveness_mean"),
            "comprehensiveness, random tokens (tuned)": mean("comprehensiveness_random_mean"),
            "sufficiency, top-attributed tokens (tuned)": mean("sufficiency_mean"),
            "sufficiency, random tokens (tuned)": mean("sufficiency_random_mean"),
            "attributions better than random": f"{sum(bool(r['better_than_random']) for r in faith_rows)}/{len(faith_rows)}",
        }
        write_json(out / "faithfulness.json", faithfulness_document(methods.resolve(e.method), faith_rows, **faith_options))

    if e.faithfulness_items:
        arith = [_prompt_only(r) for r in pick_items(ctx, e.faithfulness_items, families={"arithmetic"})]
        rationale = {}
        for label, lm in (("base", base), ("tuned", tuned)):
            ctx.console.print(f"  rationale faithfulness ({label}) on {len(arith)} arithmetic items")
            r = rationale_faithfulness(lm.model, lm.tokenizer, arith, max_new_tokens=e.max_new_tokens)
            rationale[label] = {k: r[k] for k in ("n_items", "n_evaluated", "early_answer_change_rate",
                                                   "inserted_error_change_rate", "verdict")}
            (out / f"rationale_{label}.json").write_text(json.dumps(r, indent=2, default=float), encoding="utf-8")
        result["rationale_faithfulness"] = rationale
        result.setdefault("faithfulness", {})
        for label, r in rationale.items():
            result["faithfulness"][f"answer changes under an inserted error ({label})"] = r["inserted_error_change_rate"]
            result["faithfulness"][f"rationale verdict ({label})"] = r["verdict"]
    (out / "explain.json").write_text(json.dumps(result, indent=2, default=float), encoding="utf-8")
    return {"n_items": result["n_items"], "focus": (result.get("instruction_focus") or {}).get("reading")}
