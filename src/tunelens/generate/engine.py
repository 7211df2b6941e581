"""Batched generation over HF causal LMs."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tunelens.errors import TunelensError

log = logging.getLogger("tunelens.generate")

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
    # OpenAI's penalties over the generated tokens: logit - count * frequency - (count > 0) * presence.
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    # None: no log-probabilities; k >= 0: each generated token's log-probability and the k likeliest
    # alternatives (the model's own distribution, before penalties, temperature and top_p).
    logprobs: int | None = None

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
        d.pop("logprobs")  # reported alongside, the text does not change
        for name in ("frequency_penalty", "presence_penalty"):
            if not d[name]:  # keys made before the penalties existed stay valid
                d.pop(name)
        return d


@dataclass
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    latency_s: float
    error: str | None = None
    # with params.logprobs: one TokenLogprob per token of ``text`` (see token_logprobs)
    logprobs: list["TokenLogprob"] | None = None


@dataclass
class TokenLogprob:
    token_id: int
    token: str
    logprob: float
    top: list[tuple[int, str, float]]  # the k likeliest tokens at this step: (id, text, logprob)


def token_logprobs(tokenizer: Any, new_ids: list[int], step_logits: list[Any], text: str, k: int,
                   eos_ids: Sequence[int] = ()) -> list[TokenLogprob]:
    """Log-probabilities of the generated tokens that make up ``text`` (the kept answer, cut at EOS
    or a stop string), from the raw logits of each step; with ``eos_ids`` (a generation that ended
    on EOS) the EOS token too, with empty text, as the tokens a completion was scored on include it."""
    import torch

    n = 0
    while n < min(len(new_ids), len(step_logits)) and len(tokenizer.decode(new_ids[:n], skip_special_tokens=True)) < len(text):
        n += 1
    if n < min(len(new_ids), len(step_logits)) and new_ids[n] in eos_ids:
        n += 1
    out = []
    for tok, logits in zip(new_ids[:n], step_logits[:n]):
        lp = torch.log_softmax(logits.float(), dim=-1)
        top = []
        if k > 0:
            vals, idx = torch.topk(lp, min(k, lp.shape[-1]))
            top = [(int(i), tokenizer.decode([int(i)]), float(v)) for v, i in zip(vals, idx)]
        out.append(TokenLogprob(int(tok), tokenizer.decode([int(tok)], skip_special_tokens=True), float(lp[int(tok)]), top))
    return out


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


def _result(
    tokenizer: Any, n_prompt: int, new_ids: list[int], eos_ids: list[int], params: GenerationParams, elapsed: float
) -> GenerationResult:
    """The one place a generation's text, token counts and finish reason are made (batch and stream)."""
    text, n_tok, reason = _finish(tokenizer, new_ids, eos_ids, params.stop, params.max_new_tokens)
    return GenerationResult(text, n_prompt, n_tok, reason, elapsed)


def _too_long(n_prompt: int, params: GenerationParams, limit: int | None, which: str = "prompt") -> str | None:
    """Why a prompt of ``n_prompt`` tokens cannot be generated from, or None when it fits."""
    if limit is None or n_prompt + params.max_new_tokens <= limit:
        return None
    return (
        f"{which} has {n_prompt} tokens; with max_new_tokens={params.max_new_tokens} "
        f"it exceeds the model context of {limit}"
    )


def _penalties(params: GenerationParams, prompt_width: int) -> Any:
    """OpenAI's frequency / presence penalties as a logits processor over the generated tokens
    (everything after the ``prompt_width`` prompt columns)."""
    import torch
    from transformers import LogitsProcessor

    class Penalties(LogitsProcessor):
        def __call__(self, input_ids, scores):  # noqa: ANN001
            new = input_ids[:, prompt_width:]
            if new.shape[1] == 0:
                return scores
            counts = torch.zeros_like(scores).scatter_add_(1, new, torch.ones_like(new, dtype=scores.dtype))
            return scores - counts * params.frequency_penalty - (counts > 0).to(scores.dtype) * params.presence_penalty

    return Penalties()


def _generate_kwargs(params: GenerationParams, tokenizer: Any, eos_ids: list[int], prompt_width: int = 0) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "max_new_tokens": params.max_new_tokens,
        "eos_token_id": eos_ids or None,
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos_ids or [0])[0],
        "use_cache": True,
    }
    if params.frequency_penalty or params.presence_penalty:
        from transformers import LogitsProcessorList

        kwargs["logits_processor"] = LogitsProcessorList([_penalties(params, prompt_width)])
    if params.logprobs is not None:
        kwargs.update(return_dict_in_generate=True, output_logits=True)
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


def encode_prompts(tokenizer: Any, prompts: Sequence[Prompt], params: GenerationParams,
                   limit: int | None) -> list[tuple[list[int], str | None]]:
    """(token ids, why it cannot run or None) per prompt, rendered with the chat template; every
    backend goes through here. A prompt too long for ``limit`` raises when ``params`` says so."""
    out = []
    for i, prompt in enumerate(prompts):
        ids = _encode(tokenizer, render_prompt(tokenizer, prompt))
        if not ids:
            raise TunelensError(f"prompt {i} is empty after rendering")
        msg = _too_long(len(ids), params, limit, f"prompt {i}")
        if msg is not None and params.on_too_long == "error":
            raise PromptTooLongError(msg)
        out.append((ids, msg))
    return out


def too_long_result(ids: list[int], why: str) -> GenerationResult:
    """The result of a prompt that was not generated from (``on_too_long="skip"``)."""
    return GenerationResult("", len(ids), 0, "too_long", 0.0, error=why)


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
    checked = encode_prompts(tokenizer, prompts, params, context_limit(model))
    encoded = [ids for ids, _ in checked]
    eos_ids = _eos_ids(model, tokenizer)
    results: list[GenerationResult | None] = [too_long_result(ids, msg) if msg else None for ids, msg in checked]
    runnable = [i for i, (_, msg) in enumerate(checked) if msg is None]

    # Longest first: similar lengths share a batch, and memory peaks show up at once.
    order = sorted(runnable, key=lambda i: -len(encoded[i]))
    batches = [order[s : s + params.batch_size] for s in range(0, len(order), params.batch_size)]
    device = next(model.parameters()).device
    pad_id = _generate_kwargs(params, tokenizer, eos_ids)["pad_token_id"]

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
                    **_generate_kwargs(params, tokenizer, eos_ids, width),
                )
            elapsed = time.perf_counter() - start
            sequences = out.sequences if params.logprobs is not None else out
            for row, i in enumerate(batch):
                new_ids = sequences[row, width:].tolist()
                results[i] = _result(tokenizer, len(encoded[i]), new_ids, eos_ids, params, elapsed)
                if params.logprobs is not None:
                    results[i].logprobs = token_logprobs(tokenizer, new_ids, [step[row] for step in out.logits],
                                                         results[i].text, params.logprobs,
                                                         eos_ids if results[i].finish_reason == "eos" else ())
            if bar is not None:
                bar.update(task, advance=len(batch))
    finally:
        if bar is not None:
            bar.stop()
    return [r for r in results if r is not None]


def _holdback(text: str, stops: list[str]) -> int:
    """How many trailing characters of ``text`` could be the start of a stop string (not sent yet)."""
    held = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), held, -1):
            if text.endswith(stop[:k]):
                held = k
                break
    return held


class GenerationStream:
    """One prompt's generation as it happens (``stream_generate``).

    Iterating yields text deltas; when the iteration is over, ``result`` is the
    ``GenerationResult`` that ``generate`` returns for the same prompt and params: its text, token
    counts and finish reason are made from the generated ids by the same code as the batch path's,
    and the deltas add up to ``result.text``. Text that could be the start of a stop string is held
    back until it is known not to be one, so no part of a stop string is ever sent. Closing the
    stream early (``close()``, e.g. the client went away) stops the model; ``result`` stays None.
    """

    def __init__(self, model: Any, tokenizer: Any, prompt: Prompt, params: GenerationParams | None = None):
        self.result: GenerationResult | None = None
        self._events = self._run(model, tokenizer, prompt, params or GenerationParams())

    def __iter__(self) -> "GenerationStream":
        return self

    def __next__(self) -> str:
        return next(self._events)

    def close(self) -> None:
        self._events.close()

    def _run(self, model: Any, tokenizer: Any, prompt: Prompt, params: GenerationParams) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteria
        from transformers.generation.streamers import BaseStreamer

        ids = _encode(tokenizer, render_prompt(tokenizer, prompt))
        if not ids:
            raise TunelensError("prompt is empty after rendering")
        msg = _too_long(len(ids), params, context_limit(model))
        if msg is not None:
            raise PromptTooLongError(msg)
        eos_ids = _eos_ids(model, tokenizer)
        stops = [x for x in params.stop if x]
        cancel = threading.Event()
        new_tokens: queue.Queue[list[int] | None] = queue.Queue()

        class Cancelled(StoppingCriteria):
            # Lets the consumer stop the worker thread (stop string hit, client gone).
            def __call__(self, input_ids, scores, **kw):  # noqa: ANN001
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

        class IdStreamer(BaseStreamer):
            # Token ids as generate() makes them; the prompt (the first put) is skipped.
            prompt_seen = False

            def put(self, value):  # noqa: ANN001
                if not self.prompt_seen:
                    self.prompt_seen = True
                    return
                new_tokens.put(value.reshape(-1).tolist())

            def end(self):
                new_tokens.put(None)

        streamer = IdStreamer()
        device = next(model.parameters()).device
        input_ids = torch.tensor([ids], dtype=torch.long, device=device)
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                torch.manual_seed(params.seed)  # as generate() seeds a single-prompt batch
                start = time.perf_counter()
                with torch.inference_mode():
                    out = model.generate(
                        input_ids=input_ids,
                        attention_mask=torch.ones_like(input_ids),
                        streamer=streamer,
                        stopping_criteria=_stop_criteria(tokenizer, len(ids), stops, [Cancelled()]),
                        **_generate_kwargs(params, tokenizer, eos_ids, len(ids)),
                    )
                if params.logprobs is not None:
                    outcome["logits"] = [step[0] for step in out.logits]
                    out = out.sequences
                outcome["new_ids"] = out[0, len(ids) :].tolist()
                outcome["elapsed"] = time.perf_counter() - start
            except BaseException as exc:  # surfaced to the consumer below
                outcome["error"] = exc
            finally:
                new_tokens.put(None)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        seen: list[int] = []
        emitted = ""
        try:
            for chunk in iter(new_tokens.get, None):
                seen.extend(chunk)
                cut = next((i for i, t in enumerate(seen) if t in eos_ids), len(seen))
                text = tokenizer.decode(seen[:cut], skip_special_tokens=True)
                hit = min((text.find(s) for s in stops if s in text), default=-1)
                ready = text[:hit] if hit >= 0 else text[: len(text) - _holdback(text, stops)]
                ready = ready.rstrip("\ufffd")  # an incomplete character waits for its next byte
                if len(ready) > len(emitted) and ready.startswith(emitted):
                    yield ready[len(emitted) :]
                    emitted = ready
                if hit >= 0 or cut < len(seen):
                    break
        finally:
            cancel.set()
            thread.join()
        if "error" in outcome:
            raise TunelensError(f"generation failed: {outcome['error']}")
        result = _result(tokenizer, len(ids), outcome["new_ids"], eos_ids, params, outcome["elapsed"])
        if params.logprobs is not None:
            result.logprobs = token_logprobs(tokenizer, outcome["new_ids"], outcome["logits"], result.text,
                                             params.logprobs, eos_ids if result.finish_reason == "eos" else ())
        if result.text.startswith(emitted):
            if len(result.text) > len(emitted):
                yield result.text[len(emitted) :]
        else:  # only if decoding more tokens rewrote text already sent
            log.warning("streamed text %r is not a prefix of the generated text %r", emitted, result.text)
        self.result = result


def stream_generate(
    model: Any, tokenizer: Any, prompt: Prompt, params: GenerationParams | None = None
) -> GenerationStream:
    """Text deltas for one prompt as they are produced (for SSE streaming); afterwards the stream's
    ``result`` is the same ``GenerationResult`` that ``generate`` gives (see ``GenerationStream``)."""
    return GenerationStream(model, tokenizer, prompt, params)
