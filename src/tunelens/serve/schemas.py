"""Request bodies (OpenAI's chat-completions shape plus tunelens extras) and the error shape."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI clients may send name / tool_call_id
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[ContentPart] | None = ""

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for p in self.content:
            if p.type != "text" or p.text is None:
                raise ValueError(f"only text content parts are supported, got type {p.type!r}")
            parts.append(p.text)
        return "".join(parts)


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int = Field(1, ge=1, le=1, description="Only one choice per request is supported.")
    user: str | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    # tunelens extras (send with the openai client's `extra_body`)
    documents: list[str] = Field(default_factory=list, description="Context documents (retrieval); checked for injection.")
    explain: bool = False

    @field_validator("stop")
    @classmethod
    def _stops(cls, v):
        if isinstance(v, str):
            v = [v]
        if v is not None and len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    completion_id: str = Field(min_length=1, max_length=64)
    rating: Literal["up", "down"] | StrictInt | None = None
    correction: str | None = Field(None, min_length=1)
    preferred: str | None = Field(None, min_length=1, description="A preferred alternative response.")

    @field_validator("rating")
    @classmethod
    def _rating(cls, v):
        if isinstance(v, int) and not 1 <= v <= 5:
            raise ValueError("rating must be 'up', 'down' or an integer 1-5")
        return v


class ABPairRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)


class ABJudgeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pair_id: str = Field(min_length=1, max_length=64)
    choice: Literal["left", "right", "tie"]


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
