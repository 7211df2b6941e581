"""Tokenise (prompt messages, response) the way inference sees them, and mark template tokens.

The prompt is rendered with the model's chat template plus the generation prompt (exactly what
``tunelens.generate`` feeds the model); the response is tokenised on its own and appended. A
prompt token is a *template token* when none of its characters come from a message's content
(role headers, ``<|im_start|>``, a default system prompt the template injects, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunelens.errors import TunelensError


@dataclass
class Encoding:
    prompt_text: str
    input_ids: list[int]
    input_offsets: list[tuple[int, int]]  # character span of each prompt token in prompt_text
    token_message: list[int]  # index of the message a prompt token's text comes from, -1 = template
    content_spans: list[tuple[int, int] | None]  # where each message's content sits in prompt_text
    output_ids: list[int]
    response: str

    @property
    def template_mask(self) -> list[bool]:
        return [m < 0 for m in self.token_message]

    @property
    def full_ids(self) -> list[int]:
        return self.input_ids + self.output_ids


def render(tokenizer: Any, messages: list[dict]) -> str:
    from tunelens.generate import render_prompt

    return render_prompt(tokenizer, messages)


def context_limit(model: Any) -> int | None:
    from tunelens.generate import context_limit as limit

    return limit(model)


def _locate_contents(prompt_text: str, messages: list[dict]) -> list[tuple[int, int] | None]:
    """Find each message's content in the rendered prompt, in order."""
    spans: list[tuple[int, int] | None] = []
    cursor = 0
    for i, message in enumerate(messages):
        content = message.get("content") or ""
        if not content.strip():
            spans.append(None)
            continue
        for candidate in (content, content.strip()):
            pos = prompt_text.find(candidate, cursor)
            if pos >= 0:
                spans.append((pos, pos + len(candidate)))
                cursor = pos + len(candidate)
                break
        else:
            raise TunelensError(
                f"the chat template altered the content of message {i} ({message.get('role')}); "
                "cannot tell its tokens from template tokens"
            )
    return spans


def validate_messages(messages: Any, where: str = "messages") -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise TunelensError(f"{where}: expected a non-empty list of {{role, content}} messages, got {messages!r:.120}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") or not isinstance(
            m.get("content"), str
        ):
            raise TunelensError(f"{where}[{i}]: expected {{'role': system|user|assistant, 'content': str}}, got {m!r:.120}")
    return messages


def encode(tokenizer: Any, messages: list[dict], response: str, model: Any = None) -> Encoding:
    """Encode prompt + response; raise a TunelensError when they do not fit the model's context."""
    validate_messages(messages)
    prompt_text = render(tokenizer, messages)
    try:
        enc = tokenizer(prompt_text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError as exc:
        raise TunelensError("explanations need a fast tokenizer (character offsets)") from exc
    spans = _locate_contents(prompt_text, messages)
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    token_message = []
    for start, end in offsets:
        owner = -1
        for mi, span in enumerate(spans):
            if span and end > start and start < span[1] and end > span[0]:
                owner = mi
                break
        token_message.append(owner)
    output_ids = list(tokenizer(response, add_special_tokens=False)["input_ids"]) if response else []
    if not output_ids:
        raise TunelensError("the response to explain is empty: there is nothing to attribute")
    limit = context_limit(model) if model is not None else None
    total = len(enc["input_ids"]) + len(output_ids)
    if limit is not None and total > limit:
        raise TunelensError(
            f"prompt ({len(enc['input_ids'])} tokens) + response ({len(output_ids)} tokens) = {total} tokens "
            f"exceeds the model's context of {limit} tokens; shorten the prompt or the response"
        )
    return Encoding(
        prompt_text=prompt_text,
        input_ids=list(enc["input_ids"]),
        input_offsets=offsets,
        token_message=token_message,
        content_spans=spans,
        output_ids=output_ids,
        response=response,
    )


def token_strings(tokenizer: Any, enc: Encoding) -> tuple[list[str], list[str]]:
    """Readable token texts: prompt tokens as their exact characters, response tokens decoded."""
    inputs = [enc.prompt_text[s:e] if e > s else tokenizer.decode([i]) for i, (s, e) in zip(enc.input_ids, enc.input_offsets)]
    outputs = [tokenizer.decode([i]) for i in enc.output_ids]
    return inputs, outputs


def tokens_in_char_span(enc: Encoding, message_index: int, start: int, end: int) -> list[int]:
    """Prompt token positions overlapping [start, end) of message ``message_index``'s content."""
    span = enc.content_spans[message_index]
    if span is None:
        return []
    lo, hi = span[0] + start, span[0] + end
    return [i for i, (s, e) in enumerate(enc.input_offsets) if e > s and s < hi and e > lo]
