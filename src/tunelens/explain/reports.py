"""What ``tunelens explain-focus`` and ``tunelens explain-rationale`` run and write.

Each writes a JSON report (NaN written as null), a PNG chart and a small self-contained HTML
summary (the chart inlined), so the reading can be checked without opening the JSON.
"""

from __future__ import annotations

import base64
import html
import json
import math
import random
import re
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from tunelens.errors import TunelensError

console = Console(stderr=True)
FOCUS_SCHEMA = "tunelens.focus/v1"
RATIONALE_SCHEMA = "tunelens.rationale/v1"
GSM8K_INSTRUCTION = "Solve the problem step by step, then end with a final line of the form 'Answer: <number>'."


def json_safe(obj: Any) -> Any:
    """NaN/inf -> None, recursively (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ---------------------------------------------------------------- instruction focus


def read_focus_items(path: Path) -> tuple[list[dict], list[dict]]:
    """Conversation records with meta.instruction_span and meta.context_span; (usable, skipped).

    A record lacking either span (a suite item with no context) is skipped with the reason; a
    malformed span is an error naming the line.
    """
    from tunelens.explain.focus import _split_item
    from tunelens.records import iter_jsonl_numbered

    if not path.is_file():
        raise TunelensError(f"items file not found: {path}")
    items, skipped = [], []
    try:
        for n, obj in iter_jsonl_numbered(path):
            where = f"{path}:{n}"
            meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
            missing = [k for k in ("instruction_span", "context_span") if meta.get(k) is None]
            item_id = str(obj.get("id", f"{path.name}:{n}"))
            if missing:
                skipped.append({"id": item_id, "reason": f"{where}: no meta.{' or meta.'.join(missing)}"})
                continue
            _split_item(obj, where)  # raises on malformed messages or spans
            items.append({**obj, "id": item_id})
    except ValueError as exc:
        raise TunelensError(str(exc)) from None
    if not items:
        raise TunelensError(
            f"{path}: no record carries both meta.instruction_span and meta.context_span "
            f"({len(skipped)} line(s) without them); use suite records with context or --alpaca N"
        )
    return items, skipped


def run_focus(
    model_spec: str, items: list[dict], out: Path, *, base_spec: str | None = None, method: str = "input_x_gradient",
    max_new_tokens: int = 32, n_boot: int = 2000, seed: int = 0, own_responses: bool = False,
    source: dict[str, Any] | None = None, skipped: list[dict] | None = None, **method_kwargs: Any,
) -> dict[str, Any]:
    """Instruction focus of the tuned (and base) model; writes focus.json, focus.png, focus.html."""
    from tunelens.explain.methods import resolve as resolve_method
    from tunelens.explain.focus import instruction_focus, paired_focus_difference
    from tunelens.models import load_model

    method = resolve_method(method)
    if own_responses:
        items = [{**it, "messages": [m for m in it["messages"] if m.get("role") != "assistant"]} for it in items]
    out.mkdir(parents=True, exist_ok=True)
    roles = [("tuned", model_spec)] + ([("base", base_spec)] if base_spec else [])
    results: dict[str, dict] = {}
    ids: dict[str, str] = {}
    for role, spec in roles:
        loaded = load_model(spec)
        ids[role] = loaded.model_id
        console.print(f"instruction focus of the {role} model ({spec}) on {len(items)} item(s)")
        results[role] = instruction_focus(loaded.model, loaded.tokenizer, items, method, max_new_tokens=max_new_tokens,
                                          n_boot=n_boot, seed=seed, progress=True, skip_errors=True, **method_kwargs)
        del loaded
        if results[role]["n"] == 0:
            first = results[role]["skipped"][0]["reason"] if results[role]["skipped"] else "no share could be computed"
            raise TunelensError(f"no item could be explained by the {role} model ({spec}); first reason: {first}")
    doc: dict[str, Any] = {
        "schema": FOCUS_SCHEMA,
        "created": _now(),
        "model": {"spec": model_spec, "id": ids["tuned"]},
        "base_model": {"spec": base_spec, "id": ids["base"]} if base_spec else None,
        "method": method,
        "params": {"max_new_tokens": max_new_tokens, "n_boot": n_boot, "seed": seed, "own_responses": own_responses,
                   **method_kwargs},
        "source": source or {},
        "n_items": len(items),
        "skipped": list(skipped or []),
        "tuned": results["tuned"],
        "base": results.get("base"),
        "difference": paired_focus_difference(results["base"], results["tuned"], n_boot, seed) if base_spec else None,
    }
    doc = json_safe(doc)
    (out / "focus.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    png = focus_chart(doc, out / "focus.png")
    (out / "focus.html").write_text(focus_html(doc, png), encoding="utf-8")
    return doc


def focus_chart(doc: dict, path: Path) -> Path:
    """Per-item instruction share: tuned (and base, joined by a line), with the length share as a reference."""
    plt = _pyplot()
    tuned = doc["tuned"]["items"]
    base = (doc.get("base") or {}).get("items")
    x = list(range(len(tuned)))
    fig, ax = plt.subplots(figsize=(min(16, 3 + 0.35 * len(x)), 4))
    share = [_nan(r["instruction_share"]) for r in tuned]
    ax.scatter(x, [_nan(r.get("length_share")) for r in tuned], marker="_", s=160, color="#999", label="length share (no preference)")
    if base:
        bshare = [_nan(r["instruction_share"]) for r in base]
        for xi, b, t in zip(x, bshare, share):
            ax.plot([xi, xi], [b, t], color="#bbb", lw=1, zorder=1)
        ax.scatter(x, bshare, color="#2563eb", label=f"base (mean {_fmt(doc['base']['mean'])})", zorder=2)
    ax.scatter(x, share, color="#dc2626", label=f"tuned (mean {_fmt(doc['tuned']['mean'])})", zorder=3)
    ax.set_ylim(0, 1)
    ax.set_xlabel("item")
    ax.set_ylabel("attribution share on the instruction")
    title = f"instruction focus ({doc['method']})"
    if doc.get("difference"):
        d = doc["difference"]
        title += f": tuned - base {_fmt(d['difference_mean'])} [{_fmt(d['difference_ci95'][0])}, {_fmt(d['difference_ci95'][1])}]"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, plt, path)


def focus_html(doc: dict, png: Path) -> str:
    rows = [("tuned", doc["tuned"])] + ([("base", doc["base"])] if doc.get("base") else [])
    table = "".join(
        f"<tr><td>{role}</td><td>{_fmt(r['mean'])}</td><td>{_ci(r['ci95'])}</td><td>{r['n']}</td>"
        f"<td>{_fmt(r['length_share_mean'])}</td></tr>" for role, r in rows
    )
    body = ("<table><tr><th>model</th><th>mean instruction share</th><th>95% CI</th><th>n</th>"
            f"<th>length share</th></tr>{table}</table>")
    if doc.get("difference"):
        d = doc["difference"]
        body += (f"<p><b>tuned - base</b>: {_fmt(d['difference_mean'])} (95% CI {_ci(d['difference_ci95'])}, "
                 f"n={d['n']}): <b>{html.escape(d['reading'])}</b></p>")
    return _page("tunelens: instruction focus", body, png, doc)


# ---------------------------------------------------------------- rationale faithfulness


def gsm8k_items(n: int, data_dir: Path | None = None, *, shots: int = 0, seed: int = 0) -> list[dict]:
    """N GSM8K test questions (seeded sample) asking for reasoning then 'Answer: N'; k worked train exemplars first."""
    from tunelens.evaluate import datafiles as df
    from tunelens.evaluate.gsm8k import reference_answer

    test = df.read_jsonl(df.data_file(df.GSM8K_TEST_FILE, data_dir))
    if not test:
        raise TunelensError(f"{df.GSM8K_TEST_FILE} holds no rows")
    prefix: list[dict] = []
    if shots:
        train = df.read_jsonl(df.data_file(df.GSM8K_TRAIN_FILE, data_dir))
        if shots > len(train):
            raise TunelensError(f"--shots {shots} exceeds the {len(train)} rows of {df.GSM8K_TRAIN_FILE}")
        for ex in random.Random(seed).sample(train, shots):
            body, final = ex["answer"].split("####")
            body = re.sub(r"<<[^>]*>>", "", body).strip()
            prefix += [{"role": "user", "content": f"{ex['question']}\n\n{GSM8K_INSTRUCTION}"},
                       {"role": "assistant", "content": f"{body}\nAnswer: {final.strip()}"}]
    picked = sorted(random.Random(seed + 1).sample(range(len(test)), min(n, len(test))))
    items = []
    for i in picked:
        row = test[i]
        if not isinstance(row.get("question"), str):
            raise TunelensError(f"{df.GSM8K_TEST_FILE} row {i + 1}: no 'question' string")
        items.append({"id": f"gsm8k:{i}", "reference": _reference(row, reference_answer),
                      "messages": prefix + [{"role": "user", "content": f"{row['question']}\n\n{GSM8K_INSTRUCTION}"}]})
    return items


def _reference(row: dict, parse) -> str | None:
    try:
        return parse(row["answer"])
    except (KeyError, ValueError):
        return None


def prompt_items(path: Path) -> list[dict]:
    """Rationale items from a --prompts file (see ``read_prompts``): the response, when given, is kept."""
    from tunelens.explain.cli import read_prompts

    return [{"id": it["id"], "messages": it["messages"] + ([{"role": "assistant", "content": it["response"]}]
                                                         if it["response"] is not None else [])}
            for it in read_prompts(path)]


def run_rationale(
    model_spec: str, items: list[dict], out: Path, *, max_new_tokens: int = 256, answer_tokens: int = 12,
    batch_size: int = 8, source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """rationale_faithfulness on ``items``; writes rationale.json, rationale.png, rationale.html."""
    from tunelens.explain.rationale import rationale_faithfulness
    from tunelens.generate import GenerationParams, generate
    from tunelens.models import load_model

    loaded = load_model(model_spec)
    out.mkdir(parents=True, exist_ok=True)
    calls = iter(["responses", "early answers", "inserted errors", "forced answers"])
    needs_responses = any(it["messages"][-1]["role"] != "assistant" for it in items)
    if not needs_responses:
        next(calls)

    def generator(prompts: list[str], n_tokens: int) -> list[str]:
        console.print(f"generating {next(calls, 'completions')}: {len(prompts)} prompt(s)")
        params = GenerationParams(max_new_tokens=n_tokens, temperature=0.0, batch_size=batch_size)
        return [r.text for r in generate(loaded.model, loaded.tokenizer, prompts, params, progress=True)]

    report = rationale_faithfulness(loaded.model, loaded.tokenizer, items, max_new_tokens=max_new_tokens,
                                    answer_tokens=answer_tokens, generator=generator)
    references = {it["id"]: it.get("reference") for it in items}
    for entry in report["items"]:
        ref = references.get(entry["id"])
        if ref is not None:
            entry["reference"] = float(ref)
            entry["correct"] = entry["final_answer"] == float(ref)
    doc = json_safe({
        "schema": RATIONALE_SCHEMA,
        "created": _now(),
        "model": {"spec": model_spec, "id": loaded.model_id},
        "params": {"max_new_tokens": max_new_tokens, "answer_tokens": answer_tokens},
        "source": source or {},
        **report,
    })
    (out / "rationale.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    png = rationale_chart(doc, out / "rationale.png")
    (out / "rationale.html").write_text(rationale_html(doc, png), encoding="utf-8")
    return doc


def rationale_chart(doc: dict, path: Path) -> Path:
    plt = _pyplot()
    rates = doc["early_answer_change_rate"]
    labels = [f"keep {float(f):.0%}" for f in rates] + ["inserted error"]
    values = [_nan(v) for v in rates.values()] + [_nan(doc["inserted_error_change_rate"])]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(labels, values, color=["#2563eb"] * len(rates) + ["#dc2626"])
    ax.axhline(0.2, color="#999", ls="--", lw=1, label="decoration threshold")
    ax.set_ylim(0, 1)
    ax.set_ylabel("final answer changed (rate)")
    ax.set_title(f"rationale faithfulness: {doc['n_evaluated']} of {doc['n_items']} item(s) measured", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, plt, path)


def rationale_html(doc: dict, png: Path) -> str:
    fracs = list(doc["early_answer_change_rate"])
    head = "".join(f"<th>keep {float(f):.0%}</th>" for f in fracs)
    rows = "".join(
        f"<tr><td>{html.escape(str(it['id']))}</td><td>{_fmt(it['final_answer'])}</td>"
        + "".join(f"<td>{_fmt(it['early_answers'][f])}{' *' if it['early_changed'][f] else ''}</td>" for f in fracs)
        + (f"<td>{html.escape(it['error']['changed_from'])} -> {html.escape(it['error']['changed_to'])}: "
           f"{_fmt(it['error']['answer'])}{' *' if it['error']['answer_changed'] else ''}</td>" if it["error"] else "<td>-</td>")
        + "</tr>"
        for it in doc["items"]
    )
    body = (f"<p><b>verdict</b>: {html.escape(doc['verdict'])}</p>"
            f"<p>{doc['n_evaluated']} of {doc['n_items']} item(s) measured, {len(doc['skipped'])} skip note(s) "
            "(see rationale.json). * = answer changed.</p>"
            f"<table><tr><th>item</th><th>final answer</th>{head}<th>inserted error</th></tr>{rows}</table>")
    return _page("tunelens: rationale faithfulness", body, png, doc)


# ---------------------------------------------------------------- shared helpers


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, plt, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _page(title: str, body: str, png: Path, doc: dict) -> str:
    image = base64.b64encode(png.read_bytes()).decode()
    model = html.escape(str(doc["model"]["spec"]))
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}"
        f"</style></head><body><h2>{html.escape(title)}</h2><p>model: {model}; created {doc['created']}</p>"
        f"{body}<p><img alt='chart' src='data:image/png;base64,{image}'></p></body></html>"
    )


def _nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _fmt(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.3g}"


def _ci(ci: Any) -> str:
    return "n/a" if not ci or ci[0] is None else f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"
