"""Log-probability of continuations: the scoring engine of the multiple-choice (non-generative) suites
and of the held-out loss.

``continuation_logprobs(model, tokenizer, pairs)`` returns, for every (prompt, continuation) pair,
the summed log-probability of the continuation's tokens given the prompt, and their count. The
prompt is a chat (a list of messages) rendered with the tokenizer's chat template and its
generation prompt (``tunelens.generate.render_prompt``, the same text the generative suites
generate from), so a choice is scored as the assistant's reply. Prompt and continuation are
tokenised separately (no special tokens added: the template carries them) and concatenated, so the
boundary between them is the same for every choice. ``sequence_nll(model, sequences)`` gives the
summed negative log-likelihood of the supervised tokens of whole sequences (the loss suite).

Pairs are deduplicated. Three engines compute the same numbers (tests check they agree):

- ``packed`` (the default): every prompt is laid out once, followed by all of its continuations,
  and several such prompt trees are packed into one row; a 4-D attention mask lets each
  continuation see its prompt and itself only, and position ids restart each continuation where
  its prompt ends. Rows go through the model in batches, and the LM head (a 49k-word vocabulary
  for SmolLM2, a fifth of its compute) runs only at the positions whose next token is scored. We
  wrote it because neither transformers nor lm-eval-harness has it: lm-eval scores every
  (prompt + choice) in full, and the KV-cache path below runs one prompt at a time, whose small
  forwards and cache copies cost more than the arithmetic on a CPU. Measured in
  ``benchmarks/logprob_speed.py`` (docs/benchmarks.md).
- ``prefix_cache``: the prompt is run once (its KV cache kept) and its continuations are scored
  in right-padded batches over a copy of that cache. The engine of old, kept as the benchmark's
  baseline and as a cross-check.
- ``full``: every (prompt + continuation) sequence in full, in length-sorted padded batches: the
  reference the other two are checked against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
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


ENGINES = ("packed", "prefix_cache", "full")
# Rows of 256 tokens, 2048 tokens per forward: the fastest of 128-1024 x 1024-8192 on SmolLM2-135M
# over TruthfulQA / BBQ / the loss suite (2-core AMD EPYC; longer rows pay for attention over masked pairs).
ROW_TOKENS = 256  # a packed row's length (longer prompt trees get a row of their own)
BATCH_TOKENS = 2048  # tokens per forward pass of the packed engine
HEAD_CHUNK = 1024  # scored positions per LM-head call: bounds the (positions x vocabulary) logits


@dataclass
class _Tree:
    """One prompt and its branches, laid out as ``prefix + branch_1 + branch_2 + ...``. Every branch
    attends to the prefix and to itself, and its positions continue the prefix's. ``targets`` are
    (index of the predicting token in the layout, target token id, slot)."""

    prefix: list[int]
    branches: list[list[int]] = field(default_factory=list)
    targets: list[tuple[int, int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prefix) + sum(len(b) for b in self.branches)


def _pack(trees: list[_Tree], row_tokens: int) -> list[list[int]]:
    """Trees (their indices) into rows of at most ``row_tokens`` tokens, first fit by decreasing
    length; a tree longer than a row gets a row of its own."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(trees)), key=lambda i: -len(trees[i])):
        n = len(trees[i])
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(max(row_tokens, n) - n)
    return rows


def _head_and_body(model: Any):
    """(the decoder body returning final hidden states, the LM head), or None where the logits are
    more than ``lm_head(hidden)`` (a soft cap or a scale in the config) or the model has no such parts."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if config is None or getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None) \
            or getattr(config, "logits_scaling", None):
        return None
    body = getattr(base, getattr(base, "base_model_prefix", "") or "", None)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if body is None or head is None or body is base:
        return None
    return body, head


def _packed_scores(model: Any, trees: list[_Tree], n_slots: int, *, row_tokens: int = ROW_TOKENS,
                   batch_tokens: int = BATCH_TOKENS) -> list[tuple[float, int]]:
    """(summed log-prob, tokens) per slot, every tree's targets scored in packed rows."""
    import torch

    sums = [0.0] * n_slots
    counts = [0] * n_slots
    parts = _head_and_body(model)
    first = next(model.parameters())
    dtype, device = first.dtype, first.device
    lowest = torch.finfo(dtype).min
    rows = _pack(trees, row_tokens)
    rows.sort(key=lambda r: -sum(len(trees[i]) for i in r))
    start = 0
    while start < len(rows):
        width = sum(len(trees[i]) for i in rows[start])
        stop = start + max(1, batch_tokens // max(width, 1))
        batch = rows[start:stop]
        start = stop
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        pos = torch.zeros((len(batch), width), dtype=torch.long)
        allowed = torch.zeros((len(batch), width, width), dtype=torch.bool)
        where_r, where_c, targets, slots = [], [], [], []
        for r, members in enumerate(batch):
            at = 0
            for i in members:
                tree = trees[i]
                p = len(tree.prefix)
                ids[r, at:at + p] = torch.tensor(tree.prefix)
                pos[r, at:at + p] = torch.arange(p)
                allowed[r, at:at + p, at:at + p] = True
                b_at = at + p
                for branch in tree.branches:
                    n = len(branch)
                    if n:
                        ids[r, b_at:b_at + n] = torch.tensor(branch)
                        pos[r, b_at:b_at + n] = torch.arange(p, p + n)
                        allowed[r, b_at:b_at + n, at:at + p] = True
                        allowed[r, b_at:b_at + n, b_at:b_at + n] = True
                    b_at += n
                for index, target, slot in tree.targets:
                    where_r.append(r)
                    where_c.append(at + index)
                    targets.append(target)
                    slots.append(slot)
                at += len(tree)
            for j in range(at, width):  # padding sees itself only (a row with nothing to see is NaN)
                allowed[r, j, j] = True
        if not targets:
            continue  # nothing to score in these rows (sequences without a supervised token)
        allowed &= torch.ones((width, width), dtype=torch.bool).tril()  # causal within the layout
        mask = torch.zeros((len(batch), 1, width, width), dtype=dtype)
        mask.masked_fill_(~allowed.unsqueeze(1), lowest)
        ids, pos, mask = ids.to(device), pos.to(device), mask.to(device)
        where = (torch.tensor(where_r, device=device), torch.tensor(where_c, device=device))
        with torch.inference_mode():
            if parts is not None:
                body, head = parts
                hidden = body(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).last_hidden_state
                picked = hidden[where]
            else:
                logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits
                picked = logits[where]
                head = None
            values: list[float] = []
            target_t = torch.tensor(targets, device=device)
            for c0 in range(0, len(targets), HEAD_CHUNK):
                chunk = picked[c0:c0 + HEAD_CHUNK]
                logits_c = (head(chunk) if head is not None else chunk).float()
                lp = torch.log_softmax(logits_c, dim=-1)
                values.extend(lp[torch.arange(len(chunk), device=device), target_t[c0:c0 + HEAD_CHUNK]].tolist())
        for slot, value in zip(slots, values):
            sums[slot] += value
            counts[slot] += 1
    return list(zip(sums, counts))


def sequence_nll(model: Any, sequences: Sequence[tuple[list[int], list[int]]], *, ignore_index: int = -100,
                 row_tokens: int = ROW_TOKENS, batch_tokens: int = BATCH_TOKENS,
                 cache: Any = None) -> list[tuple[float, int]]:
    """(summed negative log-likelihood, tokens) of each sequence's supervised tokens: ``(input_ids,
    labels)`` with labels ``ignore_index`` where a token is not scored (teacher forcing, labels aligned with the
    ids as in training). Sequences are packed several to a row (a block-diagonal mask keeps them
    apart) and the LM head runs only where a label is scored. ``cache``: a
    ``tunelens.evaluate.cache.LogprobCache`` of this model (values found there are not recomputed)."""
    trees, slots, out = [], [], [None] * len(sequences)
    keys = []
    for k, (ids, labels) in enumerate(sequences):
        if len(ids) != len(labels):
            raise TunelensError(f"sequence {k}: {len(ids)} ids but {len(labels)} labels")
        key = cache.key("nll", [int(x) for x in ids], [int(x) for x in labels]) if cache is not None else None
        keys.append(key)
        if key is not None and (hit := cache.get(key)) is not None:
            out[k] = hit
            continue
        targets = [(t - 1, int(labels[t]), len(trees)) for t in range(1, len(ids)) if labels[t] != ignore_index]
        trees.append(_Tree(list(ids), [], targets))
        slots.append(k)
    if trees:
        was_training = getattr(model, "training", False)
        model.eval()
        try:
            scored = _packed_scores(model, trees, len(trees), row_tokens=row_tokens, batch_tokens=batch_tokens)
        finally:
            if was_training:
                model.train()
        for k, (lp, n) in zip(slots, scored):
            out[k] = (-lp, n)
        if cache is not None:
            cache.put_many([(keys[k], out[k]) for k in slots])
    return out


def _packed_pair_scores(model: Any, encoded: list[tuple[list[int], int]], keep: list[int]) -> dict[int, tuple[float, int]]:
    """The packed engine on (prompt + continuation) pairs: one tree per distinct prompt."""
    trees: dict[tuple[int, ...], _Tree] = {}
    for i in keep:
        seq, begin = encoded[i]
        prefix = tuple(seq[:begin])
        if prefix not in trees:
            trees[prefix] = _Tree(list(prefix))
        tree, cont = trees[prefix], seq[begin:]
        index = len(tree)  # where this branch starts in the tree's layout
        tree.targets.append((begin - 1, cont[0], i))
        tree.targets.extend((index + t - 1, cont[t], i) for t in range(1, len(cont)))
        tree.branches.append(cont[:-1])
    if not trees:
        return {}
    out = _packed_scores(model, list(trees.values()), len(encoded))
    return {i: out[i] for i in keep}


def _full_scores(model: Any, encoded: list[tuple[list[int], int]], batch_size: int, keep: list[int],
                 pad: int) -> dict[int, tuple[float, int]]:
    """Every (prompt + continuation) in full, in right-padded batches: the reference."""
    import torch

    out: dict[int, tuple[float, int]] = {}
    for start in range(0, len(keep), batch_size):
        batch = keep[start:start + batch_size]
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
        sums = [0.0] * len(batch)
        for r, value in zip(rows, lp.tolist()):
            sums[r] += value
        for r, i in enumerate(batch):
            seq, begin = encoded[i]
            out[i] = (sums[r], len(seq) - begin)
    return out


def continuation_logprobs(model: Any, tokenizer: Any, pairs: Sequence[tuple[Any, str]], *,
                          batch_size: int = DEFAULT_BATCH, max_tokens: int | None = None,
                          engine: str = "packed", cache: Any = None,
                          backend: Any = None) -> list[tuple[float, int] | None]:
    """(summed log-prob, tokens) of each continuation after its prompt; None where the pair is longer
    than ``max_tokens`` (the caller records why). Prompts are messages or already rendered strings.
    ``engine``: ``packed`` (default), ``prefix_cache`` or ``full`` (module docstring);
    ``batch_size`` is the sequences per forward pass of the latter two. ``cache``: a
    ``tunelens.evaluate.cache.LogprobCache`` of this model (pairs found there are not recomputed).
    ``backend``: a ``LlamaCppBackend`` of the same model that scores the pairs instead of ``model``
    (its ``continuation_logprobs``: the same trees, in llama.cpp; ``engine`` is then unused), with
    ``cache`` that backend's own."""
    if engine not in ENGINES:
        raise TunelensError(f"unknown log-prob engine {engine!r}; choose one of {', '.join(ENGINES)}")
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
    fits = [max_tokens is None or len(ids) <= max_tokens for ids, _ in encoded]  # too long: None, cached or not
    scores: list[tuple[float, int] | None] = [None] * len(unique)
    cache_keys = [cache.key("continuation", text, cont) for text, cont in unique] if cache is not None else []
    for i, key in enumerate(cache_keys):
        if fits[i]:
            scores[i] = cache.get(key)
    order = sorted((i for i in range(len(encoded)) if fits[i] and scores[i] is None), key=lambda i: len(encoded[i][0]))
    if backend is not None:
        computed = backend.continuation_logprobs(encoded, order) if order else {}
    else:
        was_training = getattr(model, "training", False)
        model.eval()
        try:
            if engine == "packed":
                computed = _packed_pair_scores(model, encoded, order)
            elif engine == "prefix_cache":
                computed = _shared_prefix_scores(model, encoded, batch_size, order)
            else:
                pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
                computed = _full_scores(model, encoded, batch_size, order, pad)
        finally:
            if was_training:
                model.train()
    for i, value in computed.items():
        scores[i] = value
    if cache is not None:
        cache.put_many([(cache_keys[i], value) for i, value in computed.items()])
    index = {k: i for i, k in enumerate(unique)}
    return [scores[index[k]] for k in keys]


def suite_continuation_logprobs(loaded: Any, pairs: Sequence[tuple[Any, str]], ctx: Any) -> list[tuple[float, int] | None]:
    """``continuation_logprobs`` as a multiple-choice suite calls it: on the backend the runner chose for
    log-probs (``ctx.logprob_backend``, with its own cache) or on the hf model (with the model's cache)."""
    backend = getattr(ctx, "logprob_backend", None)
    return continuation_logprobs(loaded.model, loaded.tokenizer, pairs, batch_size=ctx.config.generation.batch_size,
                                 max_tokens=ctx.config.max_loss_tokens, backend=backend,
                                 cache=getattr(ctx, "backend_logprob_cache" if backend is not None else "logprob_cache", None))
