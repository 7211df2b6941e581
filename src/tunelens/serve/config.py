"""`ServeConfig`: everything the server process needs, validated up front (YAML or CLI flags)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tunelens import config_files


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelEntry(_Strict):
    name: str = Field(description="Name clients pass as `model` (and shown in /v1/models).", pattern=r"^[\w.\-:]+$")
    path: str = Field(description="Anything tunelens.models.load_model accepts: local dir, adapter dir, .gguf, hub id, 'tiny-random'.")


class Limits(_Strict):
    max_body_bytes: int = Field(65536, ge=256, description="Larger request bodies get 413.")
    max_tokens: int = Field(512, ge=1, description="Largest `max_tokens` a request may ask for (above: 400).")
    default_max_tokens: int = Field(128, ge=1, description="`max_tokens` when the request gives none.")
    max_messages: int = Field(64, ge=1, description="Most messages (tool messages included) in one request.")
    max_documents: int = Field(32, ge=0, description="Most entries in a request's `documents` field.")

    @model_validator(mode="after")
    def _default_fits(self):
        if self.default_max_tokens > self.max_tokens:
            raise ValueError(f"default_max_tokens ({self.default_max_tokens}) exceeds max_tokens ({self.max_tokens})")
        return self


class RateLimit(_Strict):
    enabled: bool = True
    requests_per_minute: float = Field(60.0, gt=0, description="Sustained token-bucket refill rate per API key.")
    burst: int = Field(20, ge=1, description="Bucket size: requests a key may make at once.")


class Batching(_Strict):
    max_batch_size: int = Field(8, ge=1, description="Most requests generated together in one call.")
    max_wait_ms: float = Field(10.0, ge=0, description="How long the queue collects requests before generating.")
    backend: Literal["hf", "llamacpp", "vllm", "auto"] = Field(
        "hf", description="Generation backend (tunelens.generate.backends). hf streams token by token; the "
        "others generate a whole reply and send it as one chunk when streamed.")
    quant: Literal["f32", "f16", "q8_0", "q4_k_m", "auto"] = Field(
        "q8_0", description="GGUF quantisation for llamacpp (q8_0: the fastest at batch 1 on every CPU measured).")


class InjectionGuard(_Strict):
    enabled: bool = True
    threshold: float | None = Field(None, ge=0, le=1, description="Detector score at or above which text is flagged "
                                    "(default: the threshold the detector was validated at, in its card).")
    tool_threshold: float | None = Field(
        None, ge=0, le=1, description="Threshold for tool turns and context documents only (default: `threshold`). "
        "Tool outputs are flagged more often than user messages (docs/serving.md gives the false alarms and the "
        "attacks caught at several thresholds, measured on held-out authors); a higher one here trades caught "
        "attacks hidden in tool outputs for fewer blocked ones.")
    input_action: Literal["flag", "block"] = Field("block", description="What to do with a flagged user message.")
    document_action: Literal["flag", "block", "strip"] = Field(
        "strip", description="What to do with a flagged context document (strip drops only that document).")
    artifact: str | None = Field(None, description="A classifier from `tunelens safety train-injection -o` (default: shipped).")
    scan_roles: list[Literal["user", "system", "developer", "assistant", "tool"]] = Field(
        ["user", "system", "developer", "assistant", "tool"], min_length=1,
        description="Turns scanned for injection: an API client can send system, developer and (forged) assistant "
        "turns as well as user turns; 'tool' covers context documents (the `documents` field and tool turns).")
    split_turns: bool = Field(True, description="Also scan each two consecutive scanned turns of one role joined, "
                              "so an attack split across two turns is caught.")


class PiiGuard(_Strict):
    enabled: bool = True
    redact_input: bool = Field(True, description="Redact PII from messages before the model sees them.")
    redact_output: bool = Field(True, description="Redact PII from the response before the client sees it.")


class ToxicityGuard(_Strict):
    enabled: bool = True
    threshold: float | None = Field(None, ge=0, le=1, description="Output toxicity score at or above which it is refused "
                                    "(default: the threshold the toxicity instrument was validated at, in its card).")
    refusal_message: str = "I'm sorry, but I can't provide that response."


class Guardrails(_Strict):
    injection: InjectionGuard = InjectionGuard()
    pii: PiiGuard = PiiGuard()
    toxicity: ToxicityGuard = ToxicityGuard()
    explain_max_tokens: int = Field(32, ge=1, description="Longest response that `explain: true` attributes.")


class DriftConfig(_Strict):
    train_records: list[str] = Field(default_factory=list, description="Training record JSONL files (the reference).")
    window: int = Field(500, ge=10, description="Most recent live prompts compared.")
    min_samples: int = Field(30, ge=5, description="Fewer live prompts than this: no verdict.")
    psi_threshold: float = Field(0.25, gt=0, description="PSI above this on any feature counts as drift.")
    mmd_alpha: float = Field(0.01, gt=0, lt=1, description="Permutation p-value below this counts as drift.")


class ABConfig(_Strict):
    models: list[str] = Field(default_factory=list, description="The two model names compared (default: the first two served).")
    judge_model: str | None = Field(None, description="Model scoring responses for the automatic metric (default: the first).")


class ServeConfig(_Strict):
    models: list[ModelEntry] = Field(min_length=1)
    db_url: str = Field("sqlite:///tunelens-serve.db", description="Any SQLAlchemy URL; SQLite runs in WAL mode.")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    license: str = Field("unknown", description="Licence of the deployment's traffic, written into exported records.")
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads (default: torch's choice). "
                                      "1 avoids thread oversubscription when the CPU is shared with other work.")
    api_docs: bool = Field(False, description="Serve Swagger UI at /docs and ReDoc at /redoc. They load their "
                           "scripts from a CDN (the browser needs internet), so they are off by default; "
                           "/openapi.json is always served.")
    limits: Limits = Limits()
    rate_limit: RateLimit = RateLimit()
    batching: Batching = Batching()
    guardrails: Guardrails = Guardrails()
    drift: DriftConfig = DriftConfig()
    ab: ABConfig = ABConfig()

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: list[ModelEntry]) -> list[ModelEntry]:
        names = [m.name for m in models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique, repeated: {dupes}")
        return models

    @model_validator(mode="after")
    def _ab_models_exist(self):
        names = {m.name for m in self.models}
        for field_name, values in (("ab.models", self.ab.models), ("ab.judge_model", [self.ab.judge_model] if self.ab.judge_model else [])):
            unknown = [v for v in values if v not in names]
            if unknown:
                raise ValueError(f"{field_name}: unknown model(s) {unknown}; served: {sorted(names)}")
        if self.ab.models and len(self.ab.models) != 2:
            raise ValueError(f"ab.models must name exactly two models, got {self.ab.models}")
        return self

    def ab_pair(self) -> tuple[str, str] | None:
        if self.ab.models:
            return self.ab.models[0], self.ab.models[1]
        if len(self.models) >= 2:
            return self.models[0].name, self.models[1].name
        return None


def load_config(path: str | Path | None = None, **overrides) -> ServeConfig:
    """Read a YAML config (optional), apply CLI overrides (None = not given), validate once.

    The shared loader (tunelens.config_files) reads the file and formats errors, naming the
    file or the command line and each bad field.
    """
    return config_files.load_config(ServeConfig, path, overrides, what="serve config", where=None if path else "command line")


def parse_model_option(values: list[str]) -> list[dict]:
    """`--model DIR` or `--model name=DIR` (repeatable) -> model entries."""
    entries = []
    for value in values:
        if "=" in value and not Path(value).exists():
            name, path = value.split("=", 1)
        else:
            path = value
            name = Path(value.rstrip("/")).name or "model"
            name = name.removesuffix(".gguf")
        entries.append({"name": name, "path": path})
    return entries
