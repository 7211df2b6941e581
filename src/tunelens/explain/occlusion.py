"""Occlusion (feature ablation) over words or single tokens: delete a segment, re-score the response.

All deletions of one prompt are scored in batched forward passes (no gradients). The drop in
log p(y_j) when a segment is deleted is shared evenly among the segment's tokens, so the row
sum over a segment equals the segment's drop.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tunelens.errors import TunelensError
from tunelens.explain.encoding import Encoding
from tunelens.explain.scoring import frozen, response_logprobs


def word_segments(enc: Encoding) -> list[list[int]]:
    """Group prompt tokens into words.

    A token starts a new word when whitespace precedes it (inside the token, as in BPE's
    leading space, or between tokens, as in word-level tokenizers), when it changes between
    template and a message, or when the previous token is whitespace only.
    """
    segments: list[list[int]] = []
    prev_owner, prev_end, prev_text = None, 0, ""
    for i, ((s, e), owner) in enumerate(zip(enc.input_offsets, enc.token_message)):
        text = enc.prompt_text[s:e]
        gap = enc.prompt_text[prev_end:s] if segments else ""
        new_word = (
            not segments
            or owner != prev_owner
            or e <= s
            or text[:1].isspace()
            or any(c.isspace() for c in gap)
            or not prev_text.strip()
        )
        if new_word:
            segments.append([i])
        else:
            segments[-1].append(i)
        prev_owner, prev_end, prev_text = owner, max(e, prev_end), text
    return segments


def occlusion(
    model: Any, enc: Encoding, *, granularity: str = "word", batch_size: int = 16, include_template: bool = True
) -> np.ndarray:
    """(R, P) matrix: per output token, the log-prob drop when each word (or token) is deleted."""
    if granularity == "word":
        segments = word_segments(enc)
    elif granularity == "token":
        segments = [[i] for i in range(len(enc.input_ids))]
    else:
        raise TunelensError(f"occlusion granularity must be 'word' or 'token', got {granularity!r}")
    if not include_template:
        segments = [seg for seg in segments if enc.token_message[seg[0]] >= 0]
    variants = [list(enc.input_ids)]
    for seg in segments:
        drop = set(seg)
        variants.append([t for i, t in enumerate(enc.input_ids) if i not in drop])
    with frozen(model):
        lp = response_logprobs(model, variants, enc.output_ids, batch_size=batch_size)
    full, ablated = lp[0], lp[1:]
    matrix = np.zeros((len(enc.output_ids), len(enc.input_ids)))
    for seg, row in zip(segments, ablated):
        matrix[:, seg] = ((full - row) / len(seg))[:, None]
    return matrix
