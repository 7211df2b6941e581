"""Occlusion: delete each segment of the prompt (word, token, sentence or given span) and re-score."""

from __future__ import annotations

from typing import Any

from tunelens.explain.methods._base import Computed, Option, register


@register(
    "occlusion",
    aliases=("ablation",),
    summary="delete each word, token, sentence or span of the prompt and re-score (no gradients)",
    options={
        "granularity": Option("'word', 'token', 'sentence' or 'span'", default="word"),
        "spans": Option("with granularity 'span': occlusion.Span objects or {message, start, end, label} dicts"),
        "batch_size": Option("deletions scored per forward pass (16)"),
        "include_template": Option("also delete chat-template segments (True)"),
    },
)
def compute(model: Any, tokenizer: Any, enc: Any, *, granularity: str, spans: Any = None, **rest: Any) -> Computed:
    from tunelens.explain.occlusion import as_spans, describe_segments, occlusion, segments_for

    spans = as_spans(spans) if spans is not None else None
    segments, labels = segments_for(enc, granularity, spans)
    matrix = occlusion(model, enc, segments=segments, **rest)
    params = {"granularity": granularity, **rest}
    if spans is not None:
        params["spans"] = [sp.__dict__ for sp in spans]
    return Computed(matrix, segments=describe_segments(enc, segments, labels), params=params)
