"""tunelens.explain: why did the model answer that, is the explanation faithful, what did tuning change.

- ``attribute`` -> ``Attribution``: response-token x prompt-token attribution matrix, by any
  method registered in ``tunelens.explain.methods`` (``METHODS``: input x gradient, integrated
  gradients, occlusion over words / tokens / sentences / given ``Span``s, attention rollout, ...);
- ``faithfulness``: comprehensiveness / sufficiency against random selections;
- ``instruction_focus`` / ``compare_instruction_focus``: attribution share on the instruction span;
- ``rationale_faithfulness``: does the final answer depend on the reasoning?
- ``train_attribution``: which training examples shaped a response (TracIn-style / representation);
- ``render_html`` / ``render_diff_html`` / ``save_heatmap_png``: views.
"""

from typing import Any

from tunelens.explain.attribution import Attribution, attribute
from tunelens.explain.faithfulness import faithfulness
from tunelens.explain.focus import alpaca_focus_items, compare_instruction_focus, instruction_focus
from tunelens.explain.occlusion import GRANULARITIES, Span
from tunelens.explain.rationale import rationale_faithfulness
from tunelens.explain.render import render_diff_html, render_html, save_heatmap_png
from tunelens.explain.tda import train_attribution

__all__ = [
    "GRANULARITIES",
    "METHODS",
    "Span",
    "Attribution",
    "alpaca_focus_items",
    "attribute",
    "compare_instruction_focus",
    "faithfulness",
    "instruction_focus",
    "rationale_faithfulness",
    "render_diff_html",
    "render_html",
    "save_heatmap_png",
    "train_attribution",
]


def __getattr__(name: str) -> Any:
    # METHODS is read from the registry when first asked for, so importing tunelens.explain loads no method.
    if name == "METHODS":
        from tunelens.explain import methods

        return methods.names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
