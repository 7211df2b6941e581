"""The explain heatmap the chat UI shows (`explain: true`): a page with no script at all.

The UI puts it in an iframe with ``sandbox=""``, where no script runs, so the shading cannot come
from `tunelens.explain.render`'s script: here each prompt token carries one of a fixed set of shade
classes, computed on the server from the aggregate attribution. The page's one ``<style>`` block
never changes, so the server's Content-Security-Policy allows it by its hash (`STYLE_HASH`), with
no ``unsafe-inline`` and no inline ``style`` attributes.
"""

from __future__ import annotations

import base64
import hashlib
import html
from typing import Any

SHADES = 10  # shade levels per sign: |attribution| / max, rounded to tenths


def _style() -> str:
    from tunelens.explain.render import _CSS

    shades = "".join(
        f".tl-attr .tl-p{k}{{background:rgba(220,38,38,{k / SHADES:.1f})}}"
        f".tl-attr .tl-n{k}{{background:rgba(37,99,235,{k / SHADES:.1f})}}"
        for k in range(1, SHADES + 1))
    return _CSS + "h2{font-family:system-ui,sans-serif}\n" + shades + "\n"


STYLE = _style()
STYLE_HASH = "'sha256-" + base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode() + "'"


def shade_class(value: float, largest: float) -> str:
    """``tl-p<k>`` (supports the response) or ``tl-n<k>`` (works against it), k in 1..10; "" for none."""
    level = round(SHADES * abs(value) / largest) if largest > 0 else 0
    if level == 0:
        return ""
    return f"tl-{'p' if value >= 0 else 'n'}{min(level, SHADES)}"


def heatmap_page(attr: Any, title: str = "tunelens: token attribution") -> str:
    """Prompt tokens shaded by their aggregate attribution over the response tokens."""
    from tunelens.explain.render import _esc

    values = [float(v) for v in attr.aggregate]
    largest = max((abs(v) for v in values), default=0.0)
    ins = []
    for i, (tok, tmpl) in enumerate(zip(attr.input_tokens, attr.template_mask)):
        v = values[i] if i < len(values) else 0.0
        classes = " ".join(c for c in ("tl-tok tl-in", "tl-tmpl" if tmpl else "", shade_class(v, largest)) if c)
        ins.append(f'<span class="{classes}" title="attribution {v:.4g}">{_esc(tok)}</span>')
    outs = "".join(f'<span class="tl-tok tl-out">{_esc(tok)}</span>' for tok in attr.output_tokens)
    note = (f"method: {html.escape(attr.method)}; red supports the response, blue works against it; "
            f"dotted grey = chat-template tokens{' (excluded from the aggregate)' if attr.exclude_template else ''}.")
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h2>{html.escape(title)}</h2><div class=\"tl-attr\">"
        f'<div class="tl-note">{note}</div>'
        '<div class="tl-note">prompt (shaded by the sum over all response tokens; hover a token for its value)</div>'
        f'<div class="tl-box">{"".join(ins)}</div>'
        '<div class="tl-note">response (the attributed tokens)</div>'
        f'<div class="tl-box">{outs}</div></div></body></html>'
    )
