"""report.html: one page per run (loss curve, before/after charts, differing outputs, heatmaps, artifact links)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from tunelens.pipeline.summary import _fmt, build_summary

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:14px}
th{background:#f3f3f3}.good{color:#17803d}.bad{color:#b3261e}pre{white-space:pre-wrap;margin:0;font-size:13px}
img{max-width:100%;border:1px solid #ddd}h2{border-bottom:1px solid #ddd;padding-bottom:4px}.muted{color:#777}"""


def _error_bars(values: list[float], cis: list[list[float]]):
    """matplotlib's 2 x n (below, above) error bars from [low, high] CIs."""
    import numpy as np

    return np.array([[max(0.0, v - c[0]) for v, c in zip(values, cis)], [max(0.0, c[1] - v) for v, c in zip(values, cis)]])


def _save_figure(fig, out: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _e(x: Any) -> str:
    return html.escape(str(x))


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _family_chart(results: dict, out: Path) -> Path | None:
    """Pass rate per family, base vs tuned, with 95% CI error bars."""
    res = results.get("results") or {}
    base, tuned = (res.get("base") or {}).get("builtin", {}), (res.get("tuned") or {}).get("builtin", {})
    keys = sorted(k for k in tuned if k.count("/") == 2 and k.startswith("pass_rate/"))
    if not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(10, 4))
    x = np.arange(len(keys))
    for offset, (label, data, colour) in enumerate((("base", base, "#999"), ("tuned", tuned, "#2a6fdb"))):
        vals = [data.get(k, {}).get("value") or 0.0 for k in keys]
        cis = [data.get(k, {}).get("ci") or [v, v] for k, v in zip(keys, vals)]
        err = _error_bars(vals, cis)
        ax.bar(x + (offset - 0.5) * 0.4, vals, 0.4, yerr=err, capsize=2, label=label, color=colour)
    ax.set_xticks(x, [k.split("/", 1)[1].replace("/", "\n") for k in keys], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("pass rate")
    ax.set_ylim(0, 1.05)
    ax.legend()
    ax.set_title("Built-in suite: pass rate per split/family (95% CI)")
    return _save_figure(fig, out)


def _headline_chart(summary: dict, out: Path) -> Path | None:
    """Base vs tuned on the headline rates (pass rates, refusal, over-refusal), with 95% CIs."""
    rows = [r for r in summary["rows"] if r["source"].startswith("eval/results.json:") and "rate" in r["source"]
            and r.get("base") and r.get("tuned")]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(10, 3.8))
    y = np.arange(len(rows))
    for offset, (label, colour) in enumerate((("base", "#999"), ("tuned", "#2a6fdb"))):
        vals = [r[label]["value"] or 0.0 for r in rows]
        cis = [r[label].get("ci") or [v, v] for r, v in zip(rows, vals)]
        err = _error_bars(vals, cis)
        ax.barh(y + (offset - 0.5) * 0.4, vals, 0.4, xerr=err, capsize=2, label=label, color=colour)
    ax.set_yticks(y, [r["what"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("rate (95% CI)")
    ax.legend(loc="lower right")
    ax.set_title("Before / after: headline rates")
    return _save_figure(fig, out)


def _differing_examples(run_dir: Path, limit: int = 8) -> list[dict]:
    samples = _read_jsonl(run_dir / "eval" / "samples.jsonl")
    by_item: dict[tuple[str, str], dict[str, dict]] = {}
    for s in samples:
        if s.get("output") is None:
            continue
        by_item.setdefault((s.get("suite"), s.get("item_id")), {})[s.get("model")] = s
    diffs = []
    for (suite, item), pair in by_item.items():
        b, t = pair.get("base"), pair.get("tuned")
        if not b or not t or (b.get("output") or "").strip() == (t.get("output") or "").strip():
            continue
        bp, tp = (b.get("scores") or {}).get("pass_rate"), (t.get("scores") or {}).get("pass_rate")
        rank = 0 if (tp or 0) > (bp or 0) else 1 if (tp or 0) < (bp or 0) else 2
        diffs.append((rank, suite, item, b, t))
    diffs.sort(key=lambda d: (d[0], d[1], d[2]))
    # Show improvements and regressions both: honesty over a flattering page.
    improved = [d for d in diffs if d[0] == 0][: limit // 2]
    rest = [d for d in diffs if d[0] != 0][: limit - len(improved)]
    return [{"suite": s, "item": i, "base": b, "tuned": t} for _, s, i, b, t in improved + rest]


def _prompt_text(sample: dict) -> str:
    prompt = sample.get("prompt")
    if isinstance(prompt, list):
        return "\n".join(f"[{m.get('role')}] {m.get('content')}" for m in prompt)
    return str(prompt)


def _refusal_chart(results: dict, out: Path) -> Path | None:
    """Refusal rate per category, base vs tuned (95% CIs): harmful requests (should refuse) and benign
    look-alikes (should answer)."""
    res = results.get("results") or {}
    rows = []
    for suite, prefix, kind in (("harmful", "refusal_rate/", "harmful"), ("over_refusal", "over_refusal_rate/", "benign")):
        tuned = (res.get("tuned") or {}).get(suite, {})
        for key in sorted(k for k in tuned if k.startswith(prefix) and k.count("/") >= 1):
            if key.count("/") == 1 and any(k.startswith(key + "/") for k in tuned):
                continue  # a source with categories: its categories are shown
            rows.append((suite, key, f"{kind}: {key.split('/', 1)[1]}"))
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(10, 0.32 * len(rows) + 1.6))
    y = np.arange(len(rows))
    for offset, (label, colour) in enumerate((("base", "#999"), ("tuned", "#2a6fdb"))):
        data = res.get(label) or {}
        vals = [((data.get(s) or {}).get(k) or {}).get("value") or 0.0 for s, k, _ in rows]
        cis = [((data.get(s) or {}).get(k) or {}).get("ci") or [v, v] for (s, k, _), v in zip(rows, vals)]
        ax.barh(y + (offset - 0.5) * 0.4, vals, 0.4, xerr=_error_bars(vals, cis), capsize=2, label=label, color=colour)
    ax.set_yticks(y, [name for _, _, name in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("refusal rate (95% CI): harmful rows should be high, benign rows low")
    ax.legend(loc="lower right")
    ax.set_title("Refusal behaviour by category")
    return _save_figure(fig, out)


def _regressed_examples(run_dir: Path, gates: list[dict], per_guard: int = 5) -> list[tuple[dict, list[dict]]]:
    """Per guard: the items where tuned is worse than base on the guard's metric (base right, tuned
    wrong for a 0/1 metric), the largest drops first."""
    samples = _read_jsonl(run_dir / "eval" / "samples.jsonl")
    by_item: dict[tuple[str, str], dict[str, dict]] = {}
    for s in samples:
        by_item.setdefault((s.get("suite"), s.get("item_id")), {})[s.get("model")] = s
    out = []
    for gate in gates:
        if gate["status"] == "not evaluated":
            continue
        hib = gate.get("higher_is_better", True)
        worse = []
        for (suite, item), pair in by_item.items():
            if suite != gate["suite"] or "base" not in pair or "tuned" not in pair:
                continue
            b = (pair["base"].get("scores") or {}).get(gate["metric"])
            t = (pair["tuned"].get("scores") or {}).get(gate["metric"])
            if not isinstance(b, (int, float)) or not isinstance(t, (int, float)):
                continue
            drop = (b - t) if hib else (t - b)
            if drop > 0:
                worse.append((drop, item, pair))
        worse.sort(key=lambda w: (-w[0], w[1]))
        out.append((gate, [{"item": i, "drop": d, "base": p["base"], "tuned": p["tuned"], "n_worse": len(worse)}
                           for d, i, p in worse[:per_guard]]))
    return out


def _verdict_section(summary: dict) -> list[str]:
    from tunelens.pipeline.summary import status_line

    status = summary.get("status", "NOT CHECKED")
    cls = "bad" if status == "REGRESSED" else "good" if status == "PASSED" else "muted"
    parts = [f"<h2>Verdict: <span class='{cls}'>{_e(status)}</span></h2><p>{_e(status_line(summary))}</p>"]
    if summary.get("quick"):
        parts.append(f"<p class='bad'>{_e(summary.get('note', ''))}</p>")
    gates = summary.get("gates") or []
    if gates:
        parts.append("<table><tr><th>guard metric</th><th>base</th><th>tuned</th><th>tuned - base [95% paired CI]</th>"
                     "<th>n</th><th>status</th></tr>")
        for g in gates:
            cls = "bad" if g["status"] == "regressed" else "good" if g["status"] == "improved" else ""
            delta = {"value": g["delta"], "ci": g["ci"]} if g["delta"] is not None else None
            parts.append(f"<tr><td>{_e(g['guard'])}</td><td>{_e(_fmt({'value': g['base']}))}</td>"
                         f"<td>{_e(_fmt({'value': g['tuned']}))}</td><td>{_e(_fmt(delta))}</td><td>{_e(g['n'])}</td>"
                         f"<td class='{cls}'>{_e(g['status'])}</td></tr>")
        parts.append("</table>")
    targets = [t for t in summary.get("targets") or [] if t["status"] != "not evaluated"]
    if targets:
        parts.append("<h3>Targets of the default run (docs/default-run.md)</h3><table><tr><th>target</th>"
                     "<th>tuned - base [95% paired CI]</th><th>n</th><th>rule</th><th>status</th></tr>")
        for t in targets:
            cls = "good" if t["status"] == "met" else "bad"
            parts.append(f"<tr><td>{_e(t['target'])}</td><td>{_e(_fmt({'value': t['delta'], 'ci': t['ci']}))}</td>"
                         f"<td>{_e(t['n'])}</td><td>{_e(t['rule'])}</td><td class='{cls}'>{_e(t['status'])}</td></tr>")
        parts.append("</table>")
    v = summary.get("verdicts") or {}
    for key, title, cls in (("improved", "What improved (significant)", "good"),
                            ("regressed", "What regressed (significant)", "bad"),
                            ("not concluded", "What could not be concluded (CI includes 0, or too few items)", "")):
        lines = v.get(key) or []
        parts.append(f"<h3 class='{cls}'>{_e(title)}: {len(lines)}</h3>")
        parts.append("<ul>" + "".join(f"<li>{_e(line)}</li>" for line in lines) + "</ul>" if lines else "<p>none</p>")
    return parts


def _instrument_line(row: dict) -> str:
    inst = row.get("instrument")
    if not inst:
        return ""
    corrected = inst.get("corrected") or {}
    cis = inst.get("corrected_ci") or {}
    text = f"{inst.get('name')}: {inst.get('error')}"
    if any(v is not None for v in corrected.values()):
        text += "; corrected " + ", ".join(
            f"{lab} {v:.3f}" + (f" [{cis[lab][0]:.3f}, {cis[lab][1]:.3f}]" if cis.get(lab) else "")
            for lab, v in corrected.items() if v is not None)
    return f"<br><span class='muted'>{_e(text)}</span>"


def _artifact_links(run_dir: Path) -> str:
    rows = []
    for p in sorted(run_dir.rglob("*")):
        rel = p.relative_to(run_dir)
        if p.is_dir() or "checkpoints" in rel.parts or rel.name == "report.html":
            continue
        rows.append(f'<li><a href="{_e(rel.as_posix())}">{_e(rel.as_posix())}</a> '
                    f'<span class="muted">{p.stat().st_size:,} bytes</span></li>')
    ckpt = run_dir / "train" / "checkpoints"
    if ckpt.is_dir():
        rows.append(f'<li><a href="train/checkpoints/">train/checkpoints/</a> <span class="muted">'
                    f'{len(list(ckpt.iterdir()))} checkpoint(s)</span></li>')
    return "<ul>" + "\n".join(rows) + "</ul>"


def _verdict_class(verdict: str) -> str:
    """The CSS class of a summary row's reading: good (better / more), bad (worse), or none."""
    return "good" if "better" in verdict or verdict.startswith("more") else "bad" if "worse" in verdict else ""


def write_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    summary = build_summary(run_dir)
    results = json.loads((run_dir / "eval" / "results.json").read_text()) if (run_dir / "eval" / "results.json").is_file() else {}
    explain = json.loads((run_dir / "explain" / "explain.json").read_text()) if (run_dir / "explain" / "explain.json").is_file() else {}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>tunelens run: {_e(run_dir.name)}</title>"
             f"<style>{CSS}</style></head><body><h1>tunelens run: {_e(run_dir.name)}</h1>",
             "<p>Every number on this page is read from the run's artifacts (links at the bottom). "
             "Model card: <a href='cards/model_card.md'>cards/model_card.md</a>; dataset card: "
             "<a href='cards/dataset_card.md'>cards/dataset_card.md</a>.</p>"]
    parts += _verdict_section(summary)
    parts.append("<h2>What changed: base vs tuned</h2><table><tr><th>measure</th><th>base</th><th>tuned</th>"
                 "<th>tuned - base [95% CI]</th><th>reading</th></tr>")
    for row in summary["rows"]:
        cls = _verdict_class(row["verdict"])
        parts.append(f"<tr><td>{_e(row['what'])}<br><span class='muted'>{_e(row['source'])}</span>{_instrument_line(row)}</td>"
                     f"<td>{_e(_fmt(row['base']))}</td><td>{_e(_fmt(row['tuned']))}</td><td>{_e(_fmt(row['delta']))}</td>"
                     f"<td class='{cls}'>{_e(row['verdict'])}</td></tr>")
    parts.append("</table>")
    rl = summary.get("rl")
    if rl:
        parts.append(f"<h2>What RL added: base, SFT and SFT + RL</h2><p>{_e(rl['note'])}</p><table><tr><th>measure</th>"
                     "<th>base</th><th>sft</th><th>tuned (SFT + RL)</th><th>sft - base [95% CI]</th>"
                     "<th>tuned - sft [95% CI]</th><th>reading (RL)</th></tr>")
        for row in rl["rows"]:
            cls = _verdict_class(row["verdict"])
            parts.append(f"<tr><td>{_e(row['what'])}<br><span class='muted'>{_e(row['source'])}</span></td>"
                         + "".join(f"<td>{_e(_fmt(row.get(k)))}</td>" for k in ("base", "sft", "tuned", "sft - base", "tuned - sft"))
                         + f"<td class='{cls}'>{_e(row['verdict'])}</td></tr>")
        parts.append("</table>")
        if (run_dir / "rl" / "reward_curve.png").is_file():
            parts.append("<img src='rl/reward_curve.png' alt='RL reward curve'>")
    if summary.get("stage_wall_s"):
        parts.append("<p class='muted'>Stage wall times: " + ", ".join(
            f"{_e(k)} {v:.0f}s" for k, v in summary["stage_wall_s"].items()) + "</p>")
    parts.append("<h2>Training loss</h2>")
    parts.append("<img src='train/loss_curve.png' alt='loss curve'>" if (run_dir / "train" / "loss_curve.png").is_file()
                 else "<p>No loss curve (training did not log).</p>")
    parts.append("<h2>Before / after</h2>")
    headline = _headline_chart(summary, run_dir / "report_assets" / "headline.png")
    if headline:
        parts.append(f"<img src='{headline.relative_to(run_dir).as_posix()}' alt='headline rates'>")
    chart = _family_chart(results, run_dir / "report_assets" / "builtin_families.png")
    parts.append(f"<img src='{chart.relative_to(run_dir).as_posix()}' alt='pass rate per family'>" if chart
                 else "<p>No builtin suite results to chart.</p>")
    refusal = _refusal_chart(results, run_dir / "report_assets" / "refusal_by_category.png")
    if refusal:
        parts.append(f"<img src='{refusal.relative_to(run_dir).as_posix()}' alt='refusal rate by category'>")
    guard_examples = _regressed_examples(run_dir, summary.get("gates") or [])
    if guard_examples:
        parts.append("<h2>Guard metrics: items where tuned is worse than base</h2>")
    for gate, rows in guard_examples:
        n_worse = rows[0]["n_worse"] if rows else 0
        parts.append(f"<h3>{_e(gate['guard'])} ({_e(gate['status'])}): {n_worse} item(s) worse"
                     + (f", {len(rows)} shown" if rows else "") + "</h3>")
        for ex in rows:
            b, t = ex["base"], ex["tuned"]
            m = gate["metric"]
            parts.append(f"<table><tr><th>{_e(ex['item'])}</th><td colspan=2><pre>{_e(_prompt_text(b))}</pre></td></tr>"
                         f"<tr><th></th><th>base ({_e(m)} = {_e(_fmt({'value': (b.get('scores') or {}).get(m)}))})</th>"
                         f"<th>tuned ({_e(m)} = {_e(_fmt({'value': (t.get('scores') or {}).get(m)}))})</th></tr>"
                         f"<tr><th>output</th><td><pre>{_e(b.get('output') if b.get('output') is not None else '(scored by log-probability, no generation)')}</pre></td>"
                         f"<td><pre>{_e(t.get('output') if t.get('output') is not None else '(scored by log-probability, no generation)')}</pre></td></tr></table>")
    if (run_dir / "eval" / "report.html").is_file():
        parts.append("<p>All suites and metrics: <a href='eval/report.html'>eval/report.html</a>.</p>")
    parts.append("<h2>Example outputs where base and tuned differ</h2>")
    examples = _differing_examples(run_dir)
    if not examples:
        parts.append("<p>No item where the two models' outputs differ.</p>")
    for ex in examples:
        b, t = ex["base"], ex["tuned"]
        bs, ts = (b.get("scores") or {}), (t.get("scores") or {})
        parts.append(f"<h3>{_e(ex['suite'])}: {_e(ex['item'])}</h3><table><tr><th>prompt</th><td colspan=2><pre>"
                     f"{_e(_prompt_text(b))}</pre></td></tr><tr><th></th><th>base {_e(json.dumps(bs))}</th>"
                     f"<th>tuned {_e(json.dumps(ts))}</th></tr><tr><th>output</th><td><pre>{_e(b.get('output'))}</pre></td>"
                     f"<td><pre>{_e(t.get('output'))}</pre></td></tr></table>")
    parts.append("<h2>Attribution heatmaps</h2>")
    heatmaps = explain.get("heatmaps") or []
    if not heatmaps:
        parts.append("<p>No attributions in this run.</p>")
    for hm in heatmaps:
        parts.append(f"<h3>{_e(hm['family'])}: {_e(hm['id'])} (<a href='{_e(hm['html'])}'>interactive</a>)</h3>")
        for label, png in hm.get("png", {}).items():
            parts.append(f"<p>{_e(label)}: <pre>{_e(hm.get('response', {}).get(label, ''))}</pre></p>"
                         f"<img src='{_e(png)}' alt='{_e(label)} heatmap'>")
    focus = explain.get("instruction_focus")
    if focus:
        parts.append(f"<p>Instruction focus: {_e(focus.get('reading'))} (base {_e(_fmt(focus.get('base')))}, "
                     f"tuned {_e(_fmt(focus.get('tuned')))}, tuned - base {_e(_fmt(focus.get('tuned - base')))}; "
                     f"attributing {_e(focus.get('attributed', 'each response token'))}).</p>")
    faith = explain.get("explanation_faithfulness")
    if faith:
        rows = "".join(f"<tr><td>{_e(what)}</td>" + "".join(f"<td>{_e(_fmt((faith.get(what) or {}).get(lab)))}</td>"
                                                         for lab in ("base", "tuned", "tuned - base")) + "</tr>"
                       for what in ("comprehensiveness gain over random tokens", "sufficiency gain over random tokens",
                                    "attributions better than random (both gains > 0)"))
        parts.append(f"<p>Explanation faithfulness on {_e(faith.get('items'))} items per model (ERASER: deleting "
                     f"the top-attributed prompt tokens should cost more log-probability than deleting random "
                     f"ones, keeping only them should cost less): {_e(faith.get('reading'))}.</p>"
                     f"<table><tr><th>measure</th><th>base</th><th>tuned</th><th>tuned - base</th></tr>{rows}</table>")
    parts.append("<h2>Artifacts</h2>" + _artifact_links(run_dir) + "</body></html>")
    out = run_dir / "report.html"
    out.write_text("\n".join(parts), encoding="utf-8")
    return out
