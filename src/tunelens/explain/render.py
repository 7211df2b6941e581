"""The explain views: self-contained HTML pages (no external assets) and PNG charts.

- an attribution: ``render_html`` (hover a response token to see its row), ``render_diff_html``
  (base vs tuned), ``save_heatmap_png``;
- the summaries of ``explain-focus`` and ``explain-rationale``: ``focus_chart`` / ``focus_html``,
  ``rationale_chart`` / ``rationale_html`` (the chart inlined in the page).
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from tunelens.explain.attribution import Attribution

_CSS = """
.tl-attr{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:14px;line-height:1.9}
.tl-attr h3{font-family:system-ui,sans-serif;margin:.4em 0}
.tl-attr .tl-box{white-space:pre-wrap;border:1px solid #ddd;border-radius:6px;padding:8px;margin:6px 0}
.tl-attr .tl-tok{border-radius:3px;padding:1px 0}
.tl-attr .tl-tmpl{color:#888;border-bottom:1px dotted #aaa}
.tl-attr .tl-out{cursor:pointer;border-bottom:2px solid #ccc}
.tl-attr .tl-out:hover,.tl-attr .tl-out.tl-sel{border-bottom-color:#111;background:#ffe9a8}
.tl-attr .tl-note{font-family:system-ui,sans-serif;color:#555;font-size:12px}
.tl-grid{display:grid;grid-template-columns:1fr 1fr;gap:16px}
"""

_JS = """
function tlShade(root, values){
  var toks = root.querySelectorAll('.tl-in');
  var m = 0; values.forEach(function(v){ m = Math.max(m, Math.abs(v)); });
  toks.forEach(function(el, i){
    var v = values[i] || 0, a = m > 0 ? Math.abs(v) / m : 0;
    el.style.background = v >= 0 ? 'rgba(220,38,38,' + a.toFixed(3) + ')' : 'rgba(37,99,235,' + a.toFixed(3) + ')';
    el.title = 'attribution ' + v.toPrecision(4);
  });
}
function tlInit(id){
  var root = document.getElementById(id), data = JSON.parse(root.querySelector('script.tl-data').textContent);
  var label = root.querySelector('.tl-row');
  tlShade(root, data.aggregate);
  root.querySelectorAll('.tl-out').forEach(function(el){
    var j = +el.dataset.j;
    el.addEventListener('mouseenter', function(){ el.classList.add('tl-sel'); tlShade(root, data.matrix[j]);
      label.textContent = 'showing output token ' + j + ' ' + JSON.stringify(data.outputs[j]); });
    el.addEventListener('mouseleave', function(){ el.classList.remove('tl-sel'); tlShade(root, data.aggregate);
      label.textContent = 'showing the aggregate over all output tokens'; });
  });
}
"""

_ids = itertools.count()


def _esc(text: str) -> str:
    return html.escape(text).replace("\n", "\u23ce\n")


def render_fragment(attr: Attribution, title: str | None = None) -> str:
    """An embeddable <div> (needs ``_JS`` and ``_CSS`` on the page; ``render_html`` adds them)."""
    div_id = f"tl-attr-{next(_ids)}"
    data = {
        "aggregate": np.asarray(attr.aggregate, dtype=float).round(6).tolist(),
        "matrix": np.asarray(attr.matrix, dtype=float).round(6).tolist(),
        "outputs": attr.output_tokens,
    }
    ins = "".join(
        f'<span class="tl-tok tl-in{" tl-tmpl" if t else ""}">{_esc(tok)}</span>'
        for tok, t in zip(attr.input_tokens, attr.template_mask)
    )
    outs = "".join(f'<span class="tl-tok tl-out" data-j="{j}">{_esc(tok)}</span>' for j, tok in enumerate(attr.output_tokens))
    note = (
        f"method: {html.escape(attr.method)}; red supports the response, blue works against it; "
        f"dotted grey = chat-template tokens{' (excluded from the aggregate)' if attr.exclude_template else ''}."
    )
    blob = json.dumps(data).replace("</", "<\\/")
    return (
        f'<div class="tl-attr" id="{div_id}">'
        + (f"<h3>{html.escape(title)}</h3>" if title else "")
        + f'<div class="tl-note">{note}</div>'
        + '<div class="tl-note">prompt (<span class="tl-row">showing the aggregate over all output tokens</span>)</div>'
        + f'<div class="tl-box">{ins}</div>'
        + '<div class="tl-note">response: hover a token to see its own attribution row</div>'
        + f'<div class="tl-box">{outs}</div>'
        + f'<script type="application/json" class="tl-data">{blob}</script>'
        + f"<script>tlInit({json.dumps(div_id)});</script></div>"
    )


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style><script>{_JS}</script></head>"
        f"<body><h2 style='font-family:system-ui,sans-serif'>{html.escape(title)}</h2>{body}</body></html>"
    )


def render_html(attr: Attribution | list[Attribution], title: str = "tunelens: token attribution",
                full_page: bool = True) -> str:
    """Prompt tokens shaded by importance; hovering an output token shows its own row.

    ``full_page=False`` returns a fragment with its own style and script, for embedding.
    """
    attrs = attr if isinstance(attr, list) else [attr]
    body = "".join(render_fragment(a, title=f"#{i}" if len(attrs) > 1 else None) for i, a in enumerate(attrs))
    if full_page:
        return _page(title, body)
    return f"<style>{_CSS}</style><script>{_JS}</script>{body}"


def _normalised(attr: Attribution) -> np.ndarray:
    agg = np.asarray(attr.matrix, dtype=float).sum(0)
    content = ~np.asarray(attr.template_mask, dtype=bool)
    total = np.abs(agg[content]).sum() if content.any() else np.abs(agg).sum()
    return agg / total if total > 0 else agg


def render_diff_html(base: Attribution | list[tuple[Attribution, Attribution]], tuned: Attribution | None = None,
                     title: str = "tunelens: base vs tuned attribution", base_label: str = "base",
                     tuned_label: str = "tuned") -> str:
    """Base and tuned side by side; with the same prompt tokens, a third view of tuned - base shares.

    Pass ``(base, tuned)`` for one prompt, or a list of (base, tuned) pairs for several.
    """
    pairs = base if isinstance(base, list) else [(base, tuned)]
    body = "".join(_diff_section(b, t, base_label, tuned_label) for b, t in pairs)
    return _page(title, body)


def _diff_section(base: Attribution, tuned: Attribution, base_label: str, tuned_label: str) -> str:
    body = (
        '<div class="tl-grid">'
        + render_fragment(base, title=f"{base_label}: {base.response[:80]}")
        + render_fragment(tuned, title=f"{tuned_label}: {tuned.response[:80]}")
        + "</div>"
    )
    if base.input_tokens == tuned.input_tokens:
        diff = _normalised(tuned) - _normalised(base)
        delta = Attribution(
            input_tokens=base.input_tokens, output_tokens=["(difference)"], matrix=diff[None, :], aggregate=diff,
            template_mask=base.template_mask, method=f"{tuned.method}: tuned share - base share",
        )
        body += render_fragment(delta, title="difference in attribution share (red: more in tuned, blue: more in base)")
    else:
        body += "<p class='tl-note'>The two models tokenise the prompt differently: no token-level difference view.</p>"
    return body + "<hr>"


def save_heatmap_png(attr: Attribution, path: str | Path, max_tokens: int = 80) -> Path:
    """Output tokens (rows) x prompt tokens (columns); long prompts keep their top ``max_tokens`` columns."""
    plt = _pyplot()
    matrix = np.asarray(attr.matrix, dtype=float)
    cols = np.arange(matrix.shape[1])
    if len(cols) > max_tokens:
        cols = np.sort(np.argsort(-np.abs(matrix).sum(0))[:max_tokens])
    shown = matrix[:, cols]
    vmax = float(np.abs(shown).max()) or 1.0
    width = min(30, 2 + 0.22 * len(cols))
    height = min(30, 2 + 0.25 * matrix.shape[0])
    fig, ax = plt.subplots(figsize=(width, height))
    im = ax.imshow(shown, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([repr(attr.input_tokens[c])[1:-1][:14] for c in cols], rotation=90, fontsize=7)
    for label, c in zip(ax.get_xticklabels(), cols):
        if attr.template_mask[c]:
            label.set_color("#888")
    ax.set_yticks(range(matrix.shape[0]))
    ax.set_yticklabels([repr(t)[1:-1][:14] for t in attr.output_tokens], fontsize=7)
    ax.set_xlabel("prompt token" + (f" (top {max_tokens} of {matrix.shape[1]})" if matrix.shape[1] > max_tokens else ""))
    ax.set_ylabel("response token")
    ax.set_title(f"{attr.method}")
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- focus and rationale summaries


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
    return _chart_page("tunelens: instruction focus", body, png, doc)


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
    return _chart_page("tunelens: rationale faithfulness", body, png, doc)


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


def _chart_page(title: str, body: str, png: Path, doc: dict) -> str:
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
