"""The published OpenAPI document, made to say what the server does.

FastAPI's generated spec documents a 422 the server never sends and none of the errors it does
send. Here every operation lists its real error statuses (all in `ErrorResponse`'s shape), the
bearer-key security scheme, and this server's own limits (largest `max_tokens`, served model
names, most messages), so that a request valid by the published schema is accepted.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from tunelens.serve.config import ServeConfig
from tunelens.serve.schemas import SEED_MAX, SEED_MIN

_ERR = {"$ref": "#/components/schemas/ErrorResponse"}

_DESCRIPTIONS = {
    "400": "invalid request: the message names the field (`error.param`)",
    "401": "missing, invalid or revoked API key",
    "404": "not found (or not visible to this key)",
    "409": "conflict: the feature is not configured, or the item was already judged",
    "413": "request body larger than limits.max_body_bytes",
    "429": "per-key rate limit exceeded (see Retry-After)",
    "503": "storage is unavailable: nothing was stored and no generation was spent; retry later",
}

# Error statuses per operation, beyond those every keyed operation has (401, 429, 503).
_EXTRA: dict[tuple[str, str], tuple[str, ...]] = {
    ("post", "/v1/chat/completions"): ("400", "404", "413"),
    ("post", "/v1/completions"): ("400", "404", "413"),
    ("post", "/v1/feedback"): ("400", "404", "413"),
    ("post", "/v1/ab/pair"): ("400", "409", "413"),
    ("post", "/v1/ab/judge"): ("400", "404", "409", "413"),
    ("get", "/v1/ab/results"): ("409",),
    ("get", "/v1/monitor"): ("409",),
    ("get", "/v1/models"): (),
}
_PUBLIC = {"/health"}


def _nullable_branch(prop: dict[str, Any], type_: str) -> dict[str, Any]:
    """The non-null branch of an `X | None` property (or the property itself)."""
    for branch in prop.get("anyOf", []):
        if branch.get("type") == type_:
            return branch
    return prop


def _op_id(spec: dict[str, Any], method: str, path: str) -> str:
    return spec["paths"][path][method]["operationId"]


def build_openapi(app: FastAPI, config: ServeConfig) -> dict[str, Any]:
    spec = get_openapi(title=app.title, version=app.version, routes=app.routes,
                       description="tunelens serve: OpenAI-compatible chat completions with guardrails, feedback, "
                                   "blind A/B and drift monitoring. Errors are JSON: `{\"error\": {message, type, "
                                   "param, code}}`.")
    comps = spec.setdefault("components", {})
    schemas = comps.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    from tunelens.serve.schemas import ErrorResponse

    err_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in err_schema.pop("$defs", {}).items():
        schemas[name] = sub
    schemas["ErrorResponse"] = err_schema
    comps["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer",
                                           "description": "Authorization: Bearer tl_<id>_<secret>"}}

    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            if path in _PUBLIC:
                continue
            op["security"] = [{"apiKey": []}]
            for status in ("401", "429", "503", *_EXTRA.get((method, path), ("400",))):
                responses[status] = {"description": _DESCRIPTIONS[status],
                                     "content": {"application/json": {"schema": _ERR}}}
    legacy = spec["paths"].get("/v1/completions", {}).get("post")
    if legacy:
        ok = legacy["responses"]["200"]
        ok["description"] = "a text_completion object, or with `stream: true` server-sent text_completion chunks"
        ok.setdefault("content", {})["text/event-stream"] = {"schema": {
            "type": "object", "required": ["data"],
            "properties": {"data": {"type": "string", "description": "a JSON text_completion chunk, an error "
                                    "object, or [DONE]"}, "event": {"type": "string"}, "id": {"type": "string"}}}}
    chat = spec["paths"].get("/v1/chat/completions", {}).get("post")
    if chat:
        ok = chat["responses"]["200"]
        ok["description"] = "a chat.completion object, or with `stream: true` server-sent chat.completion.chunk events"
        # OpenAPI 3.1: the schema of an event stream describes one event
        ok.setdefault("content", {})["text/event-stream"] = {"schema": {
            "type": "object", "required": ["data"],
            "properties": {"data": {"type": "string", "description": "a JSON chat.completion.chunk (the last one "
                                    "carries `tunelens`), an error object, or [DONE]"},
                           "event": {"type": "string"}, "id": {"type": "string"}}}}
        ok["links"] = {"GiveFeedback": {"operationId": _op_id(spec, "post", "/v1/feedback"),
                                        "requestBody": {"completion_id": "$response.body#/id", "rating": "up"}}}
    pair = spec["paths"].get("/v1/ab/pair", {}).get("post")
    if pair:
        pair["responses"]["200"]["links"] = {"Judge": {
            "operationId": _op_id(spec, "post", "/v1/ab/judge"),
            "requestBody": {"pair_id": "$response.body#/pair_id", "choice": "tie"}}}

    limits = config.limits
    req = schemas.get("ChatRequest", {}).get("properties", {})
    if req:
        for field in ("max_tokens", "max_completion_tokens"):
            _nullable_branch(req[field], "integer")["maximum"] = limits.max_tokens
        seed = _nullable_branch(req["seed"], "integer")  # exact int64 bounds (pydantic writes floats)
        seed["minimum"], seed["maximum"] = SEED_MIN, SEED_MAX
        req["model"]["enum"] = [m.name for m in config.models]
        req["messages"]["maxItems"] = limits.max_messages
        req["documents"]["maxItems"] = limits.max_documents
    req = schemas.get("CompletionRequest", {}).get("properties", {})
    if req:
        _nullable_branch(req["max_tokens"], "integer")["maximum"] = limits.max_tokens
        seed = _nullable_branch(req["seed"], "integer")
        seed["minimum"], seed["maximum"] = SEED_MIN, SEED_MAX
        req["model"]["enum"] = [m.name for m in config.models]
    ab = schemas.get("ABPairRequest", {}).get("properties", {})
    if ab:
        _nullable_branch(ab["max_tokens"], "integer")["maximum"] = limits.max_tokens
    return spec


def install_openapi(app: FastAPI, config: ServeConfig) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app, config)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
