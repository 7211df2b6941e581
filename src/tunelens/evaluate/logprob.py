"""Log-probability of continuations: the scoring engine of the multiple-choice (non-generative) suites.

``continuation_logprobs(model, tokenizer, pairs)`` returns, for every (prompt, continuation) pair,
the summed log-probability of the continuation's tokens given the prompt, and their count. The
prompt is a chat (a list of messages) rendered with the tokenizer's chat template and its
generation prompt (``tunelens.generate.render_prompt``, the same text the generative suites
generate from), so a choice is scored as the assistant's reply. Prompt and continuation are
tokenised separately (no special tokens added: the template carries them) and concatenated, so the
boundary between them is the same for every choice.

Pairs are deduplicated. By default (``share_prefix=True``) the prompt is run once (its KV cache
kept, only its last position's logits computed) and all of its continuations are scored in one
right-padded forward pass over that cache, repeated per batch: a multiple-choice question costs
its prompt once instead of once per choice. ``share_prefix=False`` scores every (prompt +
continuation) sequence in full, in length-sorted padded batches; both give the same numbers (a
test checks it) and the shared-prefix path is several times cheaper on chat prompts, whose
template and system prompt are most of the tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunelens.errors import TunelensError

DEFAULT_BATCH = 16


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _cache_kwarg(model: Any) -> str:
    """The forward() keyword of the KV cache ('cache' in newer transformers, 'past_key_values' before)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _shared_prefix_scores(model: Any, encoded: list[tuple[list[int], int]], batch_size: int,
                          keep: list[int]) -> dict[int, tuple[float, int]]:
    import torch

    groups: dict[tuple[int, ...], list[int]] = {}
    for i in keep:
        seq, begin = encoded[i]
        groups.setdefault(tuple(seq[:begin]), []).append(i)
    kw = _cache_kwarg(model)
    out: dict[int, tuple[float, int]] = {}
    with torch.inference_mode():
        for prefix, members in groups.items():
            first = model(input_ids=torch.tensor([list(prefix)]), use_cache=True, logits_to_keep=1)
            first_lp = torch.log_softmax(first.logits[0, -1].float(), dim=-1)
            cache_out = getattr(first, "cache", None) or getattr(first, "past_key_values", None)
            p = len(prefix)
            for start in range(0, len(members), batch_size):
                batch = members[start:start + batch_size]
                conts = [encoded[i][0][p:] for i in batch]
                width = max(len(c) for c in conts)
                sums = [float(first_lp[c[0]]) for c in conts]
                if width > 1:
                    import copy

                    cache = copy.deepcopy(cache_out)
                    cache.batch_repeat_interleave(len(batch))
                    ids = torch.zeros((len(batch), width - 1), dtype=torch.long)
                    mask = torch.ones((len(batch), p + width - 1), dtype=torch.long)
                    for r, c in enumerate(conts):
                        ids[r, :len(c) - 1] = torch.tensor(c[:-1])
                        mask[r, p + len(c) - 1:] = 0
                    pos = torch.arange(p, p + width - 1).unsqueeze(0).expand(len(batch), -1)
                    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, **{kw: cache}).logits
                    rows, cols, targets = [], [], []
                    for r, c in enumerate(conts):
                        for t in range(1, len(c)):  # logits at t - 1 predict continuation token t
                            rows.append(r)
                            cols.append(t - 1)
                            targets.append(c[t])
                    if rows:
                        picked = logits[torch.tensor(rows), torch.tensor(cols)].float()
                        lp = torch.log_softmax(picked, dim=-1)[torch.arange(len(targets)), torch.tensor(targets)]
                        for r, value in zip(rows, lp.tolist()):
                            sums[r] += value
                for r, i in enumerate(batch):
                    out[i] = (sums[r], len(conts[r]))
    return out


def continuation_logprobs(model: Any, tokenizer: Any, pairs: Sequence[tuple[Any, str]], *,
                          batch_size: int = DEFAULT_BATCH, max_tokens: int | None = None,
                          share_prefix: bool = True) -> list[tuple[float, int] | None]:
    """(summed log-prob, tokens) of each continuation after its prompt; None where the pair is longer
    than ``max_tokens`` (the caller records why). Prompts are messages or already rendered strings."""
    import torch

    from tunelens.generate import render_prompt

    rendered: dict[int, str] = {}
    keys: list[tuple[str, str]] = []
    for prompt, cont in pairs:
        if not isinstance(cont, str) or not cont:
            raise TunelensError(f"a continuation must be non-empty text, got {cont!r}")
        key = id(prompt)
        if key not in rendered:
            rendered[key] = render_prompt(tokenizer, prompt)
        keys.append((rendered[key], cont))
    unique = list(dict.fromkeys(keys))
    prompt_ids: dict[str, list[int]] = {}
    encoded: list[tuple[list[int], int]] = []  # (ids, index where the continuation starts)
    for text, cont in unique:
        if text not in prompt_ids:
            prompt_ids[text] = _ids(tokenizer, text)
        p = prompt_ids[text]
        if not p:
            raise TunelensError("a prompt renders to no tokens")
        c = _ids(tokenizer, cont)
        if not c:
            raise TunelensError(f"continuation {cont!r} has no tokens")
        encoded.append((p + c, len(p)))
    scores: list[tuple[float, int] | None] = [None] * len(unique)
    order = sorted((i for i, (ids, _) in enumerate(encoded) if max_tokens is None or len(ids) <= max_tokens),
                   key=lambda i: len(encoded[i][0]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        if share_prefix:
            for i, value in _shared_prefix_scores(model, encoded, batch_size, order).items():
                scores[i] = value
            order = []
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            width = max(len(encoded[i][0]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            rows, cols, targets = [], [], []
            for r, i in enumerate(batch):
                seq, begin = encoded[i]
                ids[r, :len(seq)] = torch.tensor(seq)
                mask[r, :len(seq)] = 1
                for t in range(begin, len(seq)):  # the logits at t - 1 predict token t
                    rows.append(r)
                    cols.append(t - 1)
                    targets.append(seq[t])
            with torch.inference_mode():
                logits = model(input_ids=ids, attention_mask=mask).logits
                picked = logits[torch.tensor(rows), torch.tensor(cols)].float()
                lp = torch.log_softmax(picked, dim=-1)[torch.arange(len(targets)), torch.tensor(targets)]
            sums: dict[int, float] = {}
            counts: dict[int, int] = {}
            for r, value in zip(rows, lp.tolist()):
                sums[r] = sums.get(r, 0.0) + value
                counts[r] = counts.get(r, 0) + 1
            for r, i in enumerate(batch):
                scores[i] = (sums[r], counts[r])
    finally:
        if was_training:
            model.train()
    index = {k: i for i, k in enumerate(unique)}
    return [scores[index[k]] for k in keys]
