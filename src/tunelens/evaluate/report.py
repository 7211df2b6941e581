"""report.html: side-by-side metrics, comparisons, cost, charts (matplotlib PNGs inline), examples."""

from __future__ import annotations

import base64
import html
import io
import json
from collections import defaultdict
from pathlib import Path

from tunelens.evaluate.fewshot import verdict

MAX_EXAMPLES = 12

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 8px;font-size:14px;vertical-align:top}th{background:#f3f3f3}
.sig{font-weight:bold;color:#0a6}.neg{font-weight:bold;color:#c33}pre{white-space:pre-wrap;max-width:520px;margin:0}
.muted{color:#777}"""


def _fmt(x, digits=3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return html.escape(str(x))


def _ci(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "-"


def _instrument_note(entry: dict | None) -> str:
    """The instrument behind a rate, its measured error and the corrected rate (or why there is none)."""
    inst = (entry or {}).get("instrument")
    if not inst:
        return ""
    corrected = (f"; corrected {inst['corrected']:.3f} {_ci(inst.get('corrected_ci'))}"
                 if inst.get("corrected") is not None else "")
    return (f"<br><span class='muted'>{html.escape(str(inst['instrument']))}: {html.escape(str(inst['error']))}"
            f"{html.escape(corrected)}</span>")


def _engine(info: dict | None) -> str:
    """'llamacpp f16 (GGUF 8634fe5e2f6e)' / 'hf fp32', with the note (why auto chose it) as a tooltip; '-' when
    no suite needed one."""
    if not info:
        return "-"
    sha = info.get("gguf_sha256")
    text = f"{info.get('backend')} {info.get('quant') or ''}".strip() + (f" (GGUF {sha[:12]})" if sha else "")
    note = info.get("note")
    return f"<span title='{html.escape(note, quote=True)}'>{html.escape(text)}</span>" if note else html.escape(text)


def _chart(results: dict) -> str:
    """One horizontal bar group per metric (rates in [0, 1] only), with 95% CI error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(results)
    rows = []
    for suite in results[labels[0]]:
        for metric, entry in results[labels[0]][suite].items():
            if all(metric in results[m].get(suite, {}) and results[m][suite][metric]["value"] is not None
                   and 0.0 <= results[m][suite][metric]["value"] <= 1.0 for m in labels):
                rows.append((suite, metric))
    if not rows:
        return ""
    rows = rows[:40]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(rows) * len(labels) + 1.5))
    height = 0.8 / len(labels)
    for j, label in enumerate(labels):
        vals, errs = [], [[], []]
        for suite, metric in rows:
            e = results[label][suite][metric]
            vals.append(e["value"])
            lo, hi = e["ci"] or (e["value"], e["value"])
            errs[0].append(max(0.0, e["value"] - lo))
            errs[1].append(max(0.0, hi - e["value"]))
        ax.barh([i + j * height for i in range(len(rows))], vals, height=height, xerr=errs, label=label, capsize=2)
    ax.set_yticks([i + height * (len(labels) - 1) / 2 for i in range(len(rows))])
    ax.set_yticklabels([f"{s}: {m}" for s, m in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("value (95% bootstrap CI)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return f'<img alt="metrics chart" src="data:image/png;base64,{_png(fig)}">'


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _delta_chart(comparisons: list[dict]) -> str:
    """Forest plot: each delta with its paired 95% CI; green/red when significant and better/worse."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [c for c in comparisons if c["ci"] is not None and c["delta"] is not None][:40]
    if not rows:
        return ""
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(rows) + 1.5))
    for i, c in enumerate(rows):
        better = (c["delta"] > 0) == c["higher_is_better"]
        color = ("tab:green" if better else "tab:red") if c["significant"] else "tab:gray"
        ax.errorbar(c["delta"], i, xerr=[[c["delta"] - c["ci"][0]], [c["ci"][1] - c["delta"]]], fmt="o",
                    color=color, capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{c['suite']}: {c['metric']} ({c['b']} - {c['a']})" for c in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("delta with paired bootstrap 95% CI (green: significantly better, red: worse)")
    fig.tight_layout()
    return f'<img alt="delta chart" src="data:image/png;base64,{_png(fig)}">'


def _differing_examples(samples: list[dict], labels: list[str]) -> list[tuple[str, str, str, dict]]:
    """Items whose scores differ between models (the first model against each other)."""
    by_item: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)
    for s in samples:
        if s.get("output") is not None:
            by_item[(s["suite"], s["item_id"])][s["model"]] = s
    out = []
    for (suite, item_id), per_model in by_item.items():
        if len(per_model) < len(labels):
            continue
        scores = [json.dumps(per_model[m]["scores"], sort_keys=True) for m in labels]
        if len(set(scores)) > 1:
            prompt = per_model[labels[0]]["prompt"]
            text = prompt[-1]["content"] if isinstance(prompt, list) else str(prompt)
            out.append((suite, item_id, text, per_model))
    # Round-robin over suites, so one suite does not crowd out the others.
    seen: dict[str, int] = defaultdict(int)
    ranked = []
    for example in out:
        ranked.append((seen[example[0]], example[0], example))
        seen[example[0]] += 1
    ranked.sort(key=lambda r: (r[0], r[1]))
    return [r[2] for r in ranked[:MAX_EXAMPLES]]


def _fewshot_section(per_suite: dict) -> list[str]:
    """One table per suite: k-shot prompting of the first model against zero-shot of the last."""
    parts = []
    for suite, fz in per_suite.items():
        if fz is None:
            parts.append(f"<h3>Few-shot vs zero-shot on {_fmt(suite)}</h3><p class='muted'>No item was scored in both "
                         "variants (see Skipped).</p>")
            continue
        parts.append(f"<h3>Few-shot {_fmt(fz['fewshot_model'])} ({fz['k']}-shot) vs zero-shot {_fmt(fz['zeroshot_model'])} "
                     f"on {_fmt(suite)}</h3><table><tr><th></th><th>model</th><th>accuracy</th><th>correct/n</th>"
                     "<th>tokens per item</th><th>tokens per correct</th><th>seconds per correct</th></tr>")
        for name, model in (("fewshot", fz["fewshot_model"]), ("zeroshot", fz["zeroshot_model"])):
            s = fz[name]
            parts.append(f"<tr><td>{name}</td><td>{_fmt(model)}</td><td>{_fmt(s['accuracy'])}</td><td>{s['correct']}/{s['n']}</td>"
                         f"<td>{_fmt(s['tokens_per_item'], 1)}</td><td>{_fmt(s['tokens_per_correct'], 1)}</td>"
                         f"<td>{_fmt(s['seconds_per_correct'])}</td></tr>")
        unpaired = fz.get("unpaired_items") or 0
        cached = fz["fewshot"].get("cached_items", 0) + fz["zeroshot"].get("cached_items", 0)
        parts.append(f"</table><p>few-shot / zero-shot tokens per item: {_fmt(fz['token_ratio_per_item'], 2)}; per correct "
                     f"answer: {_fmt(fz['token_ratio_per_correct'], 2)}; seconds per correct answer: "
                     f"{_fmt(fz['seconds_ratio_per_correct'], 2)}. Accuracy delta (zero-shot - few-shot) "
                     f"{fz['accuracy_delta']:+.3f}, 95% CI {_ci(fz['accuracy_delta_ci'])}: <b>{html.escape(verdict(fz))}</b>"
                     + (f" <span class='muted'>({unpaired} item(s) had only one variant and are not compared)</span>"
                        if unpaired else "") + "</p>")
        if cached:
            parts.append(f"<p class='muted'>{cached} of these outputs came from the generation cache: their seconds are "
                         "those of the run that generated them (rerun with --no-cache to time both sides together).</p>")
    return parts


def write_report(report: dict, samples: list[dict], path: Path) -> None:
    results, labels = report["results"], list(report["results"])
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>tunelens eval</title><style>{_CSS}</style></head><body>",
             "<h1>tunelens evaluation</h1>",
             f"<p class='muted'>{html.escape(report['created'])} &middot; schema {report['schema']} &middot; "
             f"suites: {', '.join(report['config']['suites'])} &middot; limit: {report['config']['limit']}</p>",
             "<h2>Models</h2><table><tr><th>label</th><th>spec</th><th>model id</th><th>fingerprint</th>"
             "<th>answers generated by</th><th>multiple-choice log-probs by</th></tr>"]
    for label, info in report["models"].items():
        parts.append(f"<tr><td>{_fmt(label)}</td><td>{_fmt(info['spec'])}</td><td>{_fmt(info['model_id'])}</td>"
                     f"<td>{_fmt(info['fingerprint'])}</td><td>{_engine(info.get('generation_backend'))}</td>"
                     f"<td>{_engine(info.get('logprob_backend'))}</td></tr>")
    parts.append("</table><h2>Metrics</h2><table><tr><th>suite</th><th>metric</th>")
    parts += [f"<th>{_fmt(m)}</th><th>95% CI</th><th>n</th>" for m in labels]
    parts.append("</tr>")
    for suite in results[labels[0]]:
        for metric in results[labels[0]][suite]:
            parts.append(f"<tr><td>{suite}</td><td>{_fmt(metric)}</td>")
            for m in labels:
                e = results[m].get(suite, {}).get(metric)
                parts.append(f"<td>{_fmt(e['value']) if e else '-'}{_instrument_note(e)}</td><td>{_ci(e['ci']) if e else '-'}</td>"
                             f"<td>{e['n'] if e else '-'}</td>")
            parts.append("</tr>")
    parts.append("</table>")
    parts.append(_chart(results))
    if report["comparisons"]:
        parts.append("<h2>Comparisons (paired bootstrap)</h2><table><tr><th>suite</th><th>metric</th><th>a</th><th>b</th>"
                     "<th>delta (b-a)</th><th>95% CI</th><th>p</th><th>significant</th><th>wins/losses/ties (b)</th></tr>")
        for c in report["comparisons"]:
            if c["delta"] is None:
                parts.append(f"<tr><td>{c['suite']}</td><td>{_fmt(c['metric'])}</td><td>{_fmt(c['a'])}</td>"
                             f"<td>{_fmt(c['b'])}</td><td colspan='5'>not defined (no items to compute it on)</td></tr>")
                continue
            better = (c["delta"] > 0) == c["higher_is_better"]
            cls = ("sig" if better else "neg") if c["significant"] else ""
            parts.append(f"<tr><td>{c['suite']}</td><td>{_fmt(c['metric'])}</td><td>{_fmt(c['a'])}</td><td>{_fmt(c['b'])}</td>"
                         f"<td class='{cls}'>{c['delta']:+.3f}</td><td>{_ci(c['ci'])}</td><td>{_fmt(c['p_value'])}</td>"
                         f"<td>{'yes' if c['significant'] else 'no'}</td><td>{c['wins']}/{c['losses']}/{c['ties']}</td></tr>")
        parts.append("</table>")
        parts.append(_delta_chart(report["comparisons"]))
    parts.append("<h2>Cost</h2><table><tr><th>model</th><th>prompt tokens</th><th>generated tokens</th><th>generations (cached)</th>"
                 "<th>tokens/s</th><th>p50 latency s</th><th>p95 latency s</th><th>peak RSS MB</th></tr>")
    for m in labels:
        c = report["cost"][m]
        parts.append(f"<tr><td>{_fmt(m)}</td><td>{c['prompt_tokens']}</td><td>{c['completion_tokens']}</td>"
                     f"<td>{c['generations']} ({c['cached_generations']})</td><td>{_fmt(c['tokens_per_s'], 1)}</td>"
                     f"<td>{_fmt(c['latency_p50_s'])}</td><td>{_fmt(c['latency_p95_s'])}</td><td>{_fmt(c['peak_rss_mb'], 0)}</td></tr>")
    parts.append("</table>")
    parts += _fewshot_section(report["cost"].get("fewshot_vs_zeroshot") or {})
    if report["skipped"]:
        parts.append(f"<h2>Skipped ({len(report['skipped'])})</h2><table><tr><th>model</th><th>suite</th><th>item</th><th>reason</th></tr>")
        for s in report["skipped"][:200]:
            parts.append(f"<tr><td>{_fmt(s['model'])}</td><td>{_fmt(s['suite'])}</td><td>{_fmt(s['item_id'])}</td><td>{_fmt(s['reason'])}</td></tr>")
        parts.append("</table>")
    if len(labels) > 1:
        examples = _differing_examples(samples, labels)
        parts.append(f"<h2>Examples where the models differ ({len(examples)} shown)</h2>")
        for suite, item_id, prompt, per_model in examples:
            parts.append(f"<h4>{_fmt(suite)} &middot; {_fmt(item_id)}</h4><table><tr><th>prompt</th>"
                         + "".join(f"<th>{_fmt(m)}</th>" for m in labels) + "</tr>"
                         f"<tr><td><pre>{html.escape(prompt[:1500])}</pre></td>"
                         + "".join(f"<td><pre>{html.escape((per_model[m]['output'] or '')[:1500])}</pre>"
                                   f"<p class='muted'>{html.escape(json.dumps(per_model[m]['scores']))}</p></td>" for m in labels)
                         + "</tr></table>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
