"""Views of an attribution: a self-contained HTML page (no external assets), a diff page, a PNG heatmap."""

from __future__ import annotations

import html
import itertools
import json
from pathlib import Path

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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
