"""Batched generation over HF causal LMs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tunelens.errors import TunelensError

Prompt = Sequence[dict[str, str]] | str
FinishReason = Literal["eos", "stop", "length", "too_long"]


class PromptTooLongError(TunelensError):
    """A prompt plus ``max_new_tokens`` does not fit the model's context."""


@dataclass
class GenerationParams:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    seed: int = 0
    stop: list[str] = field(default_factory=list)
    batch_size: int = 16
    # "error": raise PromptTooLongError; "skip": return finish_reason="too_long" with empty text.
    on_too_long: Literal["error", "skip"] = "error"

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise TunelensError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise TunelensError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise TunelensError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.batch_size < 1:
            raise TunelensError(f"batch_size must be >= 1, got {self.batch_size}")

    def cache_key(self) -> dict[str, Any]:
        """The fields that change outputs (batch_size does not, for greedy decoding)."""
        d = asdict(self)
        d.pop("batch_size")
        d.pop("on_too_long")
        return d


@dataclass
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    latency_s: float
    error: str | None = None


def render_prompt(tokenizer: Any, messages: Prompt) -> str:
    """The exact text the model sees: the chat template with the generation prompt appended."""
    if isinstance(messages, str):
        return messages
    try:
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # jinja errors, bad roles
        raise TunelensError(f"cannot apply the chat template to {list(messages)!r:.200}: {exc}") from exc


def context_limit(model: Any) -> int | None:
    cfg = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: set[int] = set()
    gen_cfg = getattr(model, "generation_config", None)
    for value in (getattr(gen_cfg, "eos_token_id", None), tokenizer.eos_token_id):
        if value is None:
            continue
        ids.update(value if isinstance(value, (list, tuple)) else [value])
    return sorted(ids)


def _encode(tokenizer: Any, text: str) -> list[int]:
    # The template already carries any BOS; adding special tokens again would double it.
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _finish(
    tokenizer: Any, new_ids: list[int], eos_ids: list[int], stops: list[str], max_new: int
) -> tuple[str, int, FinishReason]:
    """Cut a generated id list at EOS and at the first stop string; return (text, n_tokens, reason)."""
    cut = len(new_ids)
    reason: FinishReason = "length"
    for i, tok in enumerate(new_ids):
        if tok in eos_ids:
            cut, reason = i, "eos"
            break
    text = tokenizer.decode(new_ids[:cut], skip_special_tokens=True)
    n_tokens = cut + (1 if reason == "eos" else 0)
    if stops:
        hits = [(text.find(s), s) for s in stops if s and s in text]
        if hits:
            pos, _ = min(hits)
            text = text[:pos]
            reason = "stop"
            n_tokens = min(n_tokens, len(_encode(tokenizer, text)) + 1)
    if reason == "length" and cut < max_new:
        # Padding after an early stop of the whole batch is not "length".
        reason = "eos"
    return text, n_tokens, reason


def _generate_kwargs(params: GenerationParams, tokenizer: Any, eos_ids: list[int]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "max_new_tokens": params.max_new_tokens,
        "eos_token_id": eos_ids or None,
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos_ids or [0])[0],
        "use_cache": True,
    }
    if params.temperature > 0:
        kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs


def _stop_criteria(tokenizer: Any, prompt_width: int, stops: list[str], extra: list[Any] | None = None):
    """Stop strings checked on the generated text only.

    transformers' own ``stop_strings`` also matches across the prompt boundary (the template's
    trailing newline plus a generated newline triggers a "\n\n" stop at once), so we decode the
    new tokens ourselves.
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopOnStrings(StoppingCriteria):
        def __call__(self, input_ids, scores, **kw):  # noqa: ANN001
            done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            for row in range(input_ids.shape[0]):
                text = tokenizer.decode(input_ids[row, prompt_width:], skip_special_tokens=True)
                done[row] = any(s in text for s in stops)
            return done

    criteria = list(extra or [])
    if stops:
        criteria.append(StopOnStrings())
    return StoppingCriteriaList(criteria)


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    params: GenerationParams | None = None,
    progress: bool = False,
) -> list[GenerationResult]:
    """Generate one response per prompt, in the input order.

    Chat-message lists get the tokenizer's chat template; plain strings are taken as already
    rendered. Deterministic for a fixed ``params.seed`` and prompt list.
    """
    import torch

    params = params or GenerationParams()
    if not prompts:
        return []
    texts = [render_prompt(tokenizer, p) for p in prompts]
    encoded = [_encode(tokenizer, t) for t in texts]
    limit = context_limit(model)
    eos_ids = _eos_ids(model, tokenizer)
    results: list[GenerationResult | None] = [None] * len(prompts)

    runnable: list[int] = []
    for i, ids in enumerate(encoded):
        if not ids:
            raise TunelensError(f"prompt {i} is empty after rendering")
        if limit is not None and len(ids) + params.max_new_tokens > limit:
            msg = (
                f"prompt {i} has {len(ids)} tokens; with max_new_tokens={params.max_new_tokens} "
                f"it exceeds the model context of {limit}"
            )
            if params.on_too_long == "error":
                raise PromptTooLongError(msg)
            results[i] = GenerationResult("", len(ids), 0, "too_long", 0.0, error=msg)
        else:
            runnable.append(i)

    # Longest first: similar lengths share a batch, and memory peaks show up at once.
    order = sorted(runnable, key=lambda i: -len(encoded[i]))
    batches = [order[s : s + params.batch_size] for s in range(0, len(order), params.batch_size)]
    kwargs = _generate_kwargs(params, tokenizer, eos_ids)
    device = next(model.parameters()).device
    pad_id = kwargs["pad_token_id"]

    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("generating", total=len(order))
    try:
        for b, batch in enumerate(batches):
            width = max(len(encoded[i]) for i in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                ids = encoded[i]
                input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                attention[row, width - len(ids) :] = 1
            torch.manual_seed(params.seed + b)
            start = time.perf_counter()
            with torch.inference_mode():
                out = model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=attention.to(device),
                    stopping_criteria=_stop_criteria(tokenizer, width, [x for x in params.stop if x]),
                    **kwargs,
                )
            elapsed = time.perf_counter() - start
            for row, i in enumerate(batch):
                new_ids = out[row, width:].tolist()
                text, n_tok, reason = _finish(tokenizer, new_ids, eos_ids, params.stop, params.max_new_tokens)
                results[i] = GenerationResult(text, len(encoded[i]), n_tok, reason, elapsed)
            if bar is not None:
                bar.update(task, advance=len(batch))
    finally:
        if bar is not None:
            bar.stop()
    return [r for r in results if r is not None]


def stream_generate(
    model: Any, tokenizer: Any, prompt: Prompt, params: GenerationParams | None = None
) -> Iterator[str]:
    """Yield text deltas for one prompt as they are produced (for SSE streaming).

    Stop strings are honoured on the accumulated text: the delta that would cross a stop
    string is cut there and the stream ends.
    """
    import torch
    from transformers import StoppingCriteria, TextIteratorStreamer

    class _Cancelled(StoppingCriteria):
        # Lets the consumer stop the worker thread (stop string hit, client gone).
        def __call__(self, input_ids, scores, **kw):  # noqa: ANN001
            return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool)

    cancel = threading.Event()
    params = params or GenerationParams()
    text = render_prompt(tokenizer, prompt)
    ids = _encode(tokenizer, text)
    limit = context_limit(model)
    if limit is not None and len(ids) + params.max_new_tokens > limit:
        raise PromptTooLongError(
            f"prompt has {len(ids)} tokens; with max_new_tokens={params.max_new_tokens} it exceeds the context of {limit}"
        )
    eos_ids = _eos_ids(model, tokenizer)
    kwargs = _generate_kwargs(params, tokenizer, eos_ids)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], dtype=torch.long, device=device)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            torch.manual_seed(params.seed)
            with torch.inference_mode():
                model.generate(
                    input_ids=input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    streamer=streamer,
                    stopping_criteria=_stop_criteria(tokenizer, len(ids), [x for x in params.stop if x], [_Cancelled()]),
                    **kwargs,
                )
        except BaseException as exc:  # surfaced to the consumer below
            errors.append(exc)
            streamer.end()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    emitted = ""
    try:
        for delta in streamer:
            if not delta:
                continue
            candidate = emitted + delta
            hit = min((candidate.find(s) for s in params.stop if s and s in candidate), default=-1)
            if hit >= 0:
                if hit > len(emitted):
                    yield candidate[len(emitted) : hit]
                break
            emitted = candidate
            yield delta
    finally:
        cancel.set()
        thread.join()
    if errors:
        raise TunelensError(f"generation failed: {errors[0]}")
