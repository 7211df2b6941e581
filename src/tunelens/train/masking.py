"""Tokenise a conversation for SFT with labels on assistant turns only.

The mask is found by rendering the chat template prefix by prefix: for assistant turn ``i``
the prompt is ``messages[:i]`` rendered with the generation prompt (exactly what inference
sees) and the turn ends where ``messages[:i+1]`` ends. The characters in between (the reply
and its end-of-turn token, trailing whitespace excluded) are mapped to tokens through the
tokenizer's offsets. This works for any template that renders a conversation as the
concatenation of its turns, and fails loudly for one that does not.

The full text is tokenised with ``add_special_tokens=False``: the template already carries
any BOS, so adding the tokenizer's own would double it (inference does the same).
"""

from __future__ import annotations

from typing import Any

from tunelens.errors import TunelensError

IGNORE_INDEX = -100


def _render(tokenizer: Any, messages: list[dict], *, generation_prompt: bool) -> str:
    try:
        return tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=generation_prompt
        )
    except Exception as exc:  # jinja errors: bad roles, templates raising on order
        raise TunelensError(f"cannot apply the chat template to {messages!r:.200}: {exc}") from exc


def assistant_char_spans(tokenizer: Any, messages: list[dict]) -> tuple[str, list[tuple[int, int]], list[str]]:
    """Render ``messages``; return (text, [(start, end) of each assistant turn], [prompt text of each turn]).

    A span starts after the generation prompt and ends after the turn's end-of-turn token.
    """
    text = _render(tokenizer, messages, generation_prompt=False)
    spans: list[tuple[int, int]] = []
    prompts: list[str] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:i], generation_prompt=True) if i else ""
        through = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if not through.startswith(prompt) or not text.startswith(through):
            raise TunelensError(
                "the chat template does not render a conversation as the concatenation of its turns "
                f"(assistant turn {i}: the prompt rendered for inference is not a prefix of the training text), "
                "so the assistant tokens cannot be located. Use a prefix-stable template."
            )
        end = len(through.rstrip())
        if end <= len(prompt):
            raise TunelensError(f"assistant turn {i} renders to nothing with this chat template")
        spans.append((len(prompt), end))
        prompts.append(prompt)
    return text, spans, prompts


def encode_for_sft(tokenizer: Any, messages: list[dict], max_length: int | None = None) -> dict:
    """Tokenise a conversation; labels are -100 except on assistant-turn tokens (EOS included).

    Returns ``input_ids``, ``attention_mask``, ``labels`` (lists of ints, truncated to
    ``max_length`` when given), ``length`` (tokens before truncation), ``truncated`` (bool),
    ``num_supervised`` (label tokens kept) and ``prompt_length`` (tokens before the first
    assistant token, i.e. the shortest context that must fit).
    """
    if not any(m.get("role") == "assistant" for m in messages):
        raise TunelensError("conversation has no assistant turn: nothing to learn from it")
    text, spans, _ = assistant_char_spans(tokenizer, messages)
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError as exc:
        raise TunelensError("encode_for_sft needs a fast tokenizer (offset mapping)") from exc
    input_ids = list(enc["input_ids"])
    labels = [IGNORE_INDEX] * len(input_ids)
    span_idx = 0
    for pos, (start, end) in enumerate(enc["offset_mapping"]):
        if end <= start:
            continue
        while span_idx < len(spans) and start >= spans[span_idx][1]:
            span_idx += 1
        if span_idx == len(spans):
            break
        # A token belongs to the reply when it starts inside the span; a token straddling the
        # prompt/reply boundary stays prompt (inference feeds it as prompt).
        if spans[span_idx][0] <= start < spans[span_idx][1]:
            labels[pos] = input_ids[pos]
    prompt_length = next((i for i, lab in enumerate(labels) if lab != IGNORE_INDEX), len(labels))
    length = len(input_ids)
    truncated = max_length is not None and length > max_length
    if truncated:
        input_ids, labels = input_ids[:max_length], labels[:max_length]
    return {
        "input_ids": input_ids,
        "attention_mask": [1] * len(input_ids),
        "labels": labels,
        "length": length,
        "truncated": truncated,
        "num_supervised": sum(1 for lab in labels if lab != IGNORE_INDEX),
        "prompt_length": prompt_length,
    }
