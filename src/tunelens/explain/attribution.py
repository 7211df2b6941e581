"""``attribute``: which prompt tokens drove each response token, and the ``Attribution`` record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tunelens.errors import TunelensError
from tunelens.explain.encoding import Encoding, encode, token_strings

SCHEMA = "tunelens.attribution/v1"
METHODS = ("input_x_gradient", "integrated_gradients", "occlusion", "attention_rollout")
ALIASES = {"ixg": "input_x_gradient", "ig": "integrated_gradients", "ablation": "occlusion", "rollout": "attention_rollout"}


@dataclass
class Attribution:
    """Attribution of each response token's log-probability to the prompt tokens.

    ``matrix[j, i]`` is prompt token i's share in output token j; ``aggregate[i]`` is the sum over
    output tokens (template tokens zeroed when ``exclude_template``). Positive = supports the response.
    """

    input_tokens: list[str]
    output_tokens: list[str]
    matrix: np.ndarray
    aggregate: np.ndarray
    template_mask: list[bool]
    method: str
    input_ids: list[int] = field(default_factory=list)
    output_ids: list[int] = field(default_factory=list)
    input_offsets: list[tuple[int, int]] = field(default_factory=list)
    token_message: list[int] = field(default_factory=list)
    prompt_text: str = ""
    response: str = ""
    messages: list[dict] = field(default_factory=list)
    exclude_template: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    # Occlusion only: the deleted segments ({label, tokens, text, message}), in prompt order.
    segments: list[dict[str, Any]] = field(default_factory=list)

    def encoding(self) -> Encoding:
        spans: list[tuple[int, int] | None] = []
        for mi in range(len(self.messages)):
            toks = [self.input_offsets[i] for i, m in enumerate(self.token_message) if m == mi]
            spans.append((toks[0][0], toks[-1][1]) if toks else None)
        return Encoding(self.prompt_text, list(self.input_ids), list(self.input_offsets), list(self.token_message),
                        spans, list(self.output_ids), self.response)

    def with_template_excluded(self, exclude: bool = True) -> "Attribution":
        agg = self.matrix.sum(0)
        if exclude:
            agg = np.where(np.asarray(self.template_mask), 0.0, agg)
        return Attribution(**{**self.__dict__, "aggregate": agg, "exclude_template": exclude})

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "method": self.method,
            "params": self.params,
            "messages": self.messages,
            "prompt_text": self.prompt_text,
            "response": self.response,
            "input_tokens": self.input_tokens,
            "input_ids": self.input_ids,
            "input_offsets": [list(o) for o in self.input_offsets],
            "token_message": self.token_message,
            "template_mask": self.template_mask,
            "output_tokens": self.output_tokens,
            "output_ids": self.output_ids,
            "matrix": np.asarray(self.matrix, dtype=float).round(7).tolist(),
            "aggregate": np.asarray(self.aggregate, dtype=float).round(7).tolist(),
            "exclude_template": self.exclude_template,
            "segments": self.segments,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Attribution":
        if d.get("schema") != SCHEMA:
            raise TunelensError(f"not a tunelens attribution (schema {d.get('schema')!r}, expected {SCHEMA!r})")
        try:
            matrix = np.asarray(d["matrix"], dtype=float).reshape(len(d["output_tokens"]), len(d["input_tokens"]))
            return cls(
                input_tokens=list(d["input_tokens"]),
                output_tokens=list(d["output_tokens"]),
                matrix=matrix,
                aggregate=np.asarray(d["aggregate"], dtype=float),
                template_mask=[bool(x) for x in d["template_mask"]],
                method=d["method"],
                input_ids=list(d.get("input_ids", [])),
                output_ids=list(d.get("output_ids", [])),
                input_offsets=[tuple(o) for o in d.get("input_offsets", [])],
                token_message=list(d.get("token_message", [])),
                prompt_text=d.get("prompt_text", ""),
                response=d.get("response", ""),
                messages=list(d.get("messages", [])),
                exclude_template=bool(d.get("exclude_template", False)),
                params=dict(d.get("params", {})),
                segments=list(d.get("segments", [])),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise TunelensError(f"malformed attribution dict: {exc}") from exc


def resolve_method(method: str) -> str:
    name = ALIASES.get(method, method)
    if name not in METHODS:
        raise TunelensError(f"unknown attribution method {method!r}: choose one of {', '.join(METHODS)} (or {', '.join(ALIASES)})")
    return name


def generate_response(model: Any, tokenizer: Any, messages: list[dict], max_new_tokens: int = 64) -> str:
    from tunelens.generate import GenerationParams, generate

    result = generate(model, tokenizer, [messages], GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0))[0]
    if not result.text.strip():
        raise TunelensError("the model generated an empty response: nothing to attribute (pass response=...)")
    return result.text


def attribute(
    model: Any,
    tokenizer: Any,
    messages: list[dict],
    response: str | None = None,
    method: str = "input_x_gradient",
    *,
    exclude_template: bool = False,
    max_new_tokens: int = 64,
    **method_kwargs: Any,
) -> Attribution:
    """Attribute each response token's log-probability to the prompt tokens.

    ``response=None`` generates it greedily through ``tunelens.generate``. Method kwargs:
    integrated_gradients: ``steps`` (16), ``baseline`` ('mean' | 'pad' | 'zero'), ``approximation``,
    ``step_batch``; occlusion: ``granularity`` ('word' | 'token' | 'sentence' | 'span'), ``spans`` (with
    'span': ``occlusion.Span`` objects or dicts {message, start, end, label} over message contents),
    ``batch_size``, ``include_template``;
    input_x_gradient: ``reduce`` ('norm' | 'sum'), ``target_chunk``.
    """
    from tunelens.explain.gradients import input_x_gradient, integrated_gradients
    from tunelens.explain.occlusion import as_spans, describe_segments, occlusion, segments_for
    from tunelens.explain.rollout import attention_rollout

    name = resolve_method(method)
    if response is None:
        response = generate_response(model, tokenizer, messages, max_new_tokens)
    enc = encode(tokenizer, messages, response, model)
    allowed = {
        "input_x_gradient": {"reduce", "target_chunk"},
        "integrated_gradients": {"steps", "baseline", "approximation", "step_batch", "target_chunk", "progress"},
        "occlusion": {"granularity", "spans", "batch_size", "include_template"},
        "attention_rollout": set(),
    }[name]
    unknown = set(method_kwargs) - allowed
    if unknown:
        raise TunelensError(f"{name} does not take {sorted(unknown)}; it accepts {sorted(allowed) or 'no options'}")
    segments: list[dict[str, Any]] = []
    if name == "input_x_gradient":
        method_kwargs = {"reduce": "norm", **method_kwargs}
        matrix = input_x_gradient(model, enc.input_ids, enc.output_ids, **method_kwargs)
    elif name == "integrated_gradients":
        method_kwargs = {"steps": 16, "baseline": "mean", "approximation": "gausslegendre", **method_kwargs}
        matrix = integrated_gradients(model, enc.input_ids, enc.output_ids, tokenizer=tokenizer, **method_kwargs)
    elif name == "occlusion":
        method_kwargs = {"granularity": "word", **method_kwargs}
        spans = method_kwargs.pop("spans", None)
        spans = as_spans(spans) if spans is not None else None
        segs, labels = segments_for(enc, method_kwargs["granularity"], spans)
        matrix = occlusion(model, enc, segments=segs, **{k: v for k, v in method_kwargs.items() if k != "granularity"})
        segments = describe_segments(enc, segs, labels)
        if spans is not None:
            method_kwargs["spans"] = [sp.__dict__ for sp in spans]
    else:
        matrix = attention_rollout(model, enc.input_ids, enc.output_ids)
    params = {k: v for k, v in method_kwargs.items() if k != "progress"}
    inputs, outputs = token_strings(tokenizer, enc)
    attr = Attribution(
        input_tokens=inputs,
        output_tokens=outputs,
        matrix=np.asarray(matrix, dtype=float),
        aggregate=np.zeros(len(inputs)),
        template_mask=enc.template_mask,
        method=name,
        input_ids=enc.input_ids,
        output_ids=enc.output_ids,
        input_offsets=enc.input_offsets,
        token_message=enc.token_message,
        prompt_text=enc.prompt_text,
        response=response,
        messages=[dict(m) for m in messages],
        params=params,
        segments=segments,
    )
    return attr.with_template_excluded(exclude_template)
