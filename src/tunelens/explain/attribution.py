"""``attribute``: which prompt tokens drove each response token, and the ``Attribution`` record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tunelens.errors import TunelensError
from tunelens.explain.encoding import Encoding, encode, token_strings
from tunelens.explain.methods import DEFAULT, Computed, get

SCHEMA = "tunelens.attribution/v1"


RESPONSE_ROW = "(whole response)"


@dataclass
class Attribution:
    """Attribution of each response token's log-probability to the prompt tokens.

    ``matrix[j, i]`` is prompt token i's share in output token j; ``aggregate[i]`` is the sum over
    output tokens (template tokens zeroed when ``exclude_template``). Positive = supports the response.
    With a gradient method's ``target="response"`` the matrix has one row, labelled
    ``RESPONSE_ROW``: the attribution of the whole response's summed log-probability.
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
    method: str = DEFAULT,
    *,
    exclude_template: bool = False,
    max_new_tokens: int = 64,
    **method_kwargs: Any,
) -> Attribution:
    """Attribute each response token's log-probability to the prompt tokens.

    ``response=None`` generates it greedily through ``tunelens.generate``. ``method`` is a name or
    alias from ``tunelens.explain.methods`` (``methods.describe()`` lists each method's options);
    ``method_kwargs`` are that method's options, and one it does not take is an error.
    """
    spec = get(method)
    options = spec.with_defaults(method_kwargs)
    if response is None:
        response = generate_response(model, tokenizer, messages, max_new_tokens)
    enc = encode(tokenizer, messages, response, model)
    result = spec.compute(model, tokenizer, enc, **options)
    if not isinstance(result, Computed):
        result = Computed(result)
    inputs, outputs = token_strings(tokenizer, enc)
    if options.get("target") == "response":
        # One row: the whole response's log-probability (gradient methods' target="response").
        outputs = [RESPONSE_ROW]
    attr = Attribution(
        input_tokens=inputs,
        output_tokens=outputs,
        matrix=np.asarray(result.matrix, dtype=float),
        aggregate=np.zeros(len(inputs)),
        template_mask=enc.template_mask,
        method=spec.name,
        input_ids=enc.input_ids,
        output_ids=enc.output_ids,
        input_offsets=enc.input_offsets,
        token_message=enc.token_message,
        prompt_text=enc.prompt_text,
        response=response,
        messages=[dict(m) for m in messages],
        params=result.params if result.params is not None else spec.recorded(options),
        segments=result.segments,
    )
    return attr.with_template_excluded(exclude_template)
