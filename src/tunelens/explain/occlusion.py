"""Occlusion (feature ablation): delete a segment of the prompt, re-score the response.

Segments (``granularity``):

- ``word``: whitespace-delimited words (BPE pieces of one word stay together);
- ``token``: every prompt token alone;
- ``sentence``: sentences and clauses of each message (split after ``. ! ? ;`` and at newlines);
- ``span``: caller-given character spans over message contents (e.g. a suite record's
  instruction and context spans); every prompt token no span covers gets its own word segment,
  so the matrix still covers every token.

Template tokens never share a segment with message tokens. All deletions of one prompt are
scored in batched forward passes (no gradients). The drop in log p(y_j) when a segment is
deleted is shared evenly among the segment's tokens, so the row sum over a segment equals the
segment's drop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from tunelens.errors import TunelensError
from tunelens.explain.encoding import Encoding, tokens_in_char_span
from tunelens.explain.scoring import frozen, response_logprobs

GRANULARITIES = ("word", "token", "sentence", "span")
# A sentence or clause ends after terminal punctuation followed by whitespace (or the text's end), or at a newline.
SENTENCE_END_RE = re.compile(r"[.!?;]+[\"')\]]*(?=\s|$)|\n")
SPAN_META_KEYS = ("instruction_span", "context_span")


@dataclass(frozen=True)
class Span:
    """[start, end) characters of message ``message``'s content, with a label (shown in the segment list)."""

    message: int
    start: int
    end: int
    label: str


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


def sentence_segments(enc: Encoding) -> list[list[int]]:
    """Group prompt tokens into sentences/clauses; a token starts a new one after a sentence end."""
    ends = [m.end() for m in SENTENCE_END_RE.finditer(enc.prompt_text)]
    segments: list[list[int]] = []
    prev_owner, prev_start = None, -1
    for i, ((s, e), owner) in enumerate(zip(enc.input_offsets, enc.token_message)):
        crossed = any(prev_start < b <= s for b in ends)
        # Whitespace between sentences (a lone newline token) stays with the sentence it ends.
        trailing_space = e > s and not enc.prompt_text[s:e].strip()
        if not segments or owner != prev_owner or e <= s or (crossed and not trailing_space):
            segments.append([i])
        else:
            segments[-1].append(i)
        prev_owner, prev_start = owner, max(s, prev_start)
    return segments


def span_segments(enc: Encoding, spans: list[Span]) -> tuple[list[list[int]], list[str]]:
    """One segment per span, then word segments for the tokens no span covers; (segments, labels)."""
    if not spans:
        raise TunelensError("granularity 'span' needs at least one span")
    ordered = sorted(spans, key=lambda sp: (sp.message, sp.start))
    for a, b in zip(ordered, ordered[1:]):
        if a.message == b.message and b.start < a.end:
            raise TunelensError(f"spans {a.label!r} [{a.start}, {a.end}) and {b.label!r} [{b.start}, {b.end}) overlap")
    claimed: set[int] = set()
    found: list[tuple[list[int], str]] = []
    for sp in spans:
        if not 0 <= sp.message < len(enc.content_spans) or enc.content_spans[sp.message] is None:
            raise TunelensError(f"span {sp.label!r} points at message {sp.message}, which has no content in this prompt")
        msg_start, msg_end = enc.content_spans[sp.message]
        if not 0 <= sp.start < sp.end <= msg_end - msg_start:
            raise TunelensError(
                f"span {sp.label!r} [{sp.start}, {sp.end}) is outside message {sp.message} ({msg_end - msg_start} chars)"
            )
        # A token straddling two adjacent spans goes to the first span given.
        tokens = [t for t in tokens_in_char_span(enc, sp.message, sp.start, sp.end) if t not in claimed]
        if not tokens:
            raise TunelensError(f"span {sp.label!r} [{sp.start}, {sp.end}) covers no prompt token of its own")
        claimed.update(tokens)
        found.append((tokens, sp.label))
    for seg in word_segments(enc):
        rest = [t for t in seg if t not in claimed]
        if rest:
            found.append((rest, "word"))
    found.sort(key=lambda x: x[0][0])
    return [f[0] for f in found], [f[1] for f in found]


def segments_for(
    enc: Encoding, granularity: str, spans: list[Span] | None = None
) -> tuple[list[list[int]], list[str]]:
    """The deletion segments of ``enc`` for ``granularity``, with a label per segment."""
    if granularity not in GRANULARITIES:
        raise TunelensError(f"occlusion granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}")
    if spans is not None and granularity != "span":
        raise TunelensError(f"spans were given but granularity is {granularity!r}; spans need granularity 'span'")
    if granularity == "span":
        if spans is None:
            raise TunelensError("granularity 'span' needs spans (e.g. a record's meta.instruction_span / context_span)")
        return span_segments(enc, spans)
    if granularity == "token":
        segments = [[i] for i in range(len(enc.input_ids))]
    elif granularity == "sentence":
        segments = sentence_segments(enc)
    else:
        segments = word_segments(enc)
    return segments, [granularity] * len(segments)


def describe_segments(enc: Encoding, segments: list[list[int]], labels: list[str]) -> list[dict[str, Any]]:
    """JSON-ready segment list: label, token positions, the characters they cover, owning message (-1 template)."""
    out = []
    for seg, label in zip(segments, labels):
        lo = min(enc.input_offsets[i][0] for i in seg)
        hi = max(enc.input_offsets[i][1] for i in seg)
        out.append({"label": label, "tokens": list(seg), "text": enc.prompt_text[lo:hi],
                    "message": int(enc.token_message[seg[0]])})
    return out


def occlusion(
    model: Any, enc: Encoding, *, granularity: str = "word", spans: list[Span] | None = None,
    batch_size: int = 16, include_template: bool = True, segments: list[list[int]] | None = None,
) -> np.ndarray:
    """(R, P) matrix: per output token, the log-prob drop when each segment is deleted.

    ``segments`` (token position lists) overrides ``granularity``; with ``include_template=False``
    template segments are not deleted (their columns stay 0).
    """
    if segments is None:
        segments, _ = segments_for(enc, granularity, spans)
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


def spans_from_meta(messages: list[dict], meta: Any, where: str) -> list[Span]:
    """Spans carried by a record's meta, over the last user message's content.

    Reads ``meta.spans`` (a list of ``{"start", "end", "label"?, "message"?}``; message defaults
    to the last user message) and ``meta.instruction_span`` / ``meta.context_span`` ([start, end)
    pairs, as suite records and ``alpaca_focus_items`` carry them; a null one is ignored).
    """
    meta = meta if isinstance(meta, dict) else {}
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    default_msg = users[-1] if users else None
    spans: list[Span] = []
    for name in SPAN_META_KEYS:
        value = meta.get(name)
        if value is None:
            continue
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(x, int) for x in value)):
            raise TunelensError(f"{where}: meta.{name} must be [start, end) character offsets, got {value!r:.80}")
        spans.append(Span(_need_user(default_msg, where), value[0], value[1], name.removesuffix("_span")))
    extra = meta.get("spans")
    if extra is not None:
        if not isinstance(extra, list):
            raise TunelensError(f"{where}: meta.spans must be a list of {{start, end, label, message}}, got {extra!r:.80}")
        for k, sp in enumerate(extra):
            ok = isinstance(sp, dict) and isinstance(sp.get("start"), int) and isinstance(sp.get("end"), int)
            msg = sp.get("message", default_msg) if isinstance(sp, dict) else None
            if not ok or not isinstance(msg, int):
                raise TunelensError(f"{where}: meta.spans[{k}] needs integer start, end (and message), got {sp!r:.80}")
            spans.append(Span(msg, sp["start"], sp["end"], str(sp.get("label", f"span{k}"))))
    if not spans:
        raise TunelensError(
            f"{where}: granularity 'span' needs spans in meta (instruction_span / context_span, or a spans list); none found"
        )
    return spans


def _need_user(index: int | None, where: str) -> int:
    if index is None:
        raise TunelensError(f"{where}: instruction/context spans refer to the last user message, and there is none")
    return index


def as_spans(spans: Any) -> list[Span]:
    """Accept Span objects or dicts {message, start, end, label}."""
    out = []
    for k, sp in enumerate(spans):
        if isinstance(sp, Span):
            out.append(sp)
        elif isinstance(sp, dict) and all(isinstance(sp.get(x), int) for x in ("message", "start", "end")):
            out.append(Span(sp["message"], sp["start"], sp["end"], str(sp.get("label", f"span{k}"))))
        else:
            raise TunelensError(f"spans[{k}]: expected a Span or {{message, start, end, label}} with integer offsets, got {sp!r:.80}")
    return out
