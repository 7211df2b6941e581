"""Request bodies (OpenAI's chat-completions shape plus tunelens extras) and the error shape.

The public API is strict: JSON types are not coerced (``"10"`` is not an integer, ``1`` is not
``true``, ``true`` is not ``1``; as in JSON Schema, ``2.0`` is the integer 2), unknown fields are rejected, numbers must be finite and within the documented ranges,
and text must be valid Unicode without NUL characters (a lone UTF-16 surrogate such as
``"\\ud800"`` is rejected). Every rule a request can break is in the JSON schema the server
publishes at ``/openapi.json``, so a request valid by the schema is accepted.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator

# No NUL; pydantic-core also refuses strings that are not valid Unicode (lone surrogates) when a
# pattern is set, with error type ``string_unicode``.
NO_NUL_PATTERN = r"^[^\x00]*$"
Text = Annotated[str, StringConstraints(pattern=NO_NUL_PATTERN)]
NonEmptyText = Annotated[str, StringConstraints(pattern=NO_NUL_PATTERN, min_length=1)]



def _integral_float(v: Any) -> Any:
    # JSON Schema's "integer" is any number without a fraction: 3.0 is the integer 3. Strings and
    # booleans stay what they are, and are refused.
    return int(v) if isinstance(v, float) and v.is_integer() else v


def Int(**bounds: int) -> Any:
    """A strict JSON integer with bounds (placed before the validator so they appear in the schema)."""
    return Annotated[int, Field(**bounds), BeforeValidator(_integral_float)]


SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1  # int64, what torch.manual_seed takes
MIN_SAMPLING_TEMPERATURE = 0.001  # below this (but above 0) sampling overflows; 0 is greedy


def _strict(extra: Literal["forbid", "allow"] = "forbid", **more) -> ConfigDict:
    return ConfigDict(strict=True, extra=extra, allow_inf_nan=False, **more)


class ContentPart(BaseModel):
    model_config = _strict("allow")
    type: Literal["text"] = Field(description="Only text parts are supported.")
    text: Text


class ChatMessage(BaseModel):
    # No extra fields: a message's name, tool_calls or tool_call_id would change what an OpenAI model
    # does, and the chat template has no place for them, so they are a 400 naming the field rather
    # than a silent drop.
    model_config = _strict()
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: Text | list[ContentPart] | None = ""

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    model_config = _strict("allow")
    include_usage: bool = False


def _temperature_schema(schema: dict[str, Any]) -> None:
    schema["not"] = {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": MIN_SAMPLING_TEMPERATURE}


# A cross-field rule in the published schema, so that a request valid by the schema is accepted:
# top_logprobs needs logprobs: true (as OpenAI's API says).
_TOP_LOGPROBS_NEEDS_LOGPROBS = {
    "if": {"required": ["top_logprobs"], "properties": {"top_logprobs": {"type": "integer"}}},
    "then": {"required": ["logprobs"], "properties": {"logprobs": {"const": True}}}}

PENALTY_DOC = ("OpenAI's definition, over the generated tokens: logit - count * frequency_penalty - "
               "(count > 0) * presence_penalty.")


class ChatRequest(BaseModel):
    model_config = _strict(json_schema_extra=_TOP_LOGPROBS_NEEDS_LOGPROBS)
    model: NonEmptyText
    messages: list[ChatMessage] = Field(min_length=1, json_schema_extra={
        # at least one user message (tool messages are context documents, not turns)
        "contains": {"type": "object", "properties": {"role": {"const": "user"}}, "required": ["role"]}})
    max_tokens: Int(ge=1) | None = None
    max_completion_tokens: Int(ge=1) | None = None
    temperature: float = Field(0.0, ge=0, le=2, json_schema_extra=_temperature_schema,
                               description=f"0 is greedy; sampling needs at least {MIN_SAMPLING_TEMPERATURE}.")
    top_p: float = Field(1.0, gt=0, le=1)
    seed: Int(ge=SEED_MIN, le=SEED_MAX) | None = None
    stop: Text | Annotated[list[Text], Field(max_length=4)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Int(ge=1, le=1) = Field(1, description="Only one choice per request is supported.")
    user: Text | None = Field(None, description="An end-user id; stored with the exchange.")
    presence_penalty: float | None = Field(None, ge=-2, le=2, description=PENALTY_DOC)
    frequency_penalty: float | None = Field(None, ge=-2, le=2, description=PENALTY_DOC)
    logprobs: bool | None = Field(None, description="Log-probability of each output token (the model's own "
                                                    "distribution, before penalties, temperature and top_p).")
    top_logprobs: Int(ge=0, le=20) | None = Field(None, description="The likeliest alternatives per token; "
                                                                    "needs logprobs: true.")
    # tunelens extras (send with the openai client's `extra_body`)
    documents: list[Text] = Field(default_factory=list, description="Context documents (retrieval); checked for injection.")
    explain: bool = False

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, v: float) -> float:
        if 0 < v < MIN_SAMPLING_TEMPERATURE:
            raise ValueError(f"must be 0 (greedy) or at least {MIN_SAMPLING_TEMPERATURE}")
        return v

    @field_validator("messages")
    @classmethod
    def _has_user(cls, v: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.role == "user" for m in v):
            raise ValueError("messages must contain at least one user message")
        return v

    @field_validator("top_logprobs")
    @classmethod
    def _top_needs_logprobs(cls, v: int | None, info: Any) -> int | None:
        if v is not None and info.data.get("logprobs") is not True:
            raise ValueError("top_logprobs needs logprobs: true")
        return v

    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


MAX_COMPLETION_PROMPTS = 16


class CompletionRequest(BaseModel):
    """The legacy ``/v1/completions`` body: raw prompt text, no chat template."""
    model_config = _strict(json_schema_extra={"not": {
        # max_tokens 0 (only the prompt back, e.g. scored with logprobs, as eval clients ask) needs echo
        "required": ["max_tokens"], "properties": {"max_tokens": {"const": 0}},
        "not": {"required": ["echo"], "properties": {"echo": {"const": True}}}}})
    model: NonEmptyText
    prompt: NonEmptyText | Annotated[list[NonEmptyText], Field(min_length=1, max_length=MAX_COMPLETION_PROMPTS)] = Field(
        description=f"A prompt, or a list of up to {MAX_COMPLETION_PROMPTS} (one choice each, in order).")
    max_tokens: Int(ge=0) | None = Field(None, description="0 only with echo: the prompt alone (scored with logprobs).")
    temperature: float = Field(0.0, ge=0, le=2, json_schema_extra=_temperature_schema,
                               description=f"0 is greedy; sampling needs at least {MIN_SAMPLING_TEMPERATURE}.")
    top_p: float = Field(1.0, gt=0, le=1)
    n: Int(ge=1, le=1) = Field(1, description="Only one choice per prompt is supported.")
    seed: Int(ge=SEED_MIN, le=SEED_MAX) | None = None
    stop: Text | Annotated[list[Text], Field(max_length=4)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: Int(ge=0, le=5) | None = Field(None, description="Log-probability of each token and this many "
                                                              "likeliest alternatives (the model's own distribution).")
    echo: bool = Field(False, description="Return the prompt before the completion (with logprobs: its tokens' "
                                          "log-probabilities too).")
    presence_penalty: float | None = Field(None, ge=-2, le=2, description=PENALTY_DOC)
    frequency_penalty: float | None = Field(None, ge=-2, le=2, description=PENALTY_DOC)
    user: Text | None = Field(None, description="An end-user id; stored with the exchange.")

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, v: float) -> float:
        if 0 < v < MIN_SAMPLING_TEMPERATURE:
            raise ValueError(f"must be 0 (greedy) or at least {MIN_SAMPLING_TEMPERATURE}")
        return v

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


Rating = Literal["up", "down"] | Int(ge=1, le=5)


class FeedbackRequest(BaseModel):
    model_config = _strict(json_schema_extra={
        "anyOf": [{"required": ["rating"]}, {"required": ["correction"]}, {"required": ["preferred"]}]})
    completion_id: NonEmptyText = Field(max_length=64)
    rating: Rating = Field(None, description="'up', 'down' or 1-5.")  # type: ignore[assignment]
    correction: NonEmptyText = Field(None, description="A corrected response.")  # type: ignore[assignment]
    preferred: NonEmptyText = Field(None, description="A preferred alternative response.")  # type: ignore[assignment]


class ABPairRequest(BaseModel):
    model_config = _strict()
    prompt: NonEmptyText
    max_tokens: Int(ge=1) | None = None


class ABJudgeRequest(BaseModel):
    model_config = _strict()
    pair_id: NonEmptyText = Field(max_length=64)
    choice: Literal["left", "right", "tie"]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error, in OpenAI's shape."""
    error: ErrorDetail


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape (text made safe to encode: a lone surrogate is shown escaped)."""
    return {"error": {"message": safe_text(message), "type": type_, "param": safe_text(param) if param else param,
                      "code": code}}


def safe_text(text: str) -> str:
    """``text`` with anything UTF-8 cannot encode (lone surrogates) written as a backslash escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
