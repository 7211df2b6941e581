"""The FastAPI app: OpenAI-compatible chat completions with guardrails, feedback, A/B, monitor, UI.

`create_app` assembles the parts: the shared `Runtime` (runtime.py: models, store, guardrails, auth),
the middleware (middleware.py), the JSON error handlers below, the routes (routes.py, each a thin
skin over the API: the chat handler in chat.py, feedback, monitor, A/B in ab.py) and the published
OpenAPI document (openapi.py).
"""

from __future__ import annotations

import re
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunelens.errors import TunelensError
from tunelens.serve.config import ServeConfig
from tunelens.serve.db import STORAGE_ERRORS, StorageUnavailable, describe_storage_error
from tunelens.serve.middleware import BodySizeLimit, CatchAll, SecurityHeaders, content_security_policy
from tunelens.serve.routes import register_routes
from tunelens.serve.runtime import APIError, Runtime
from tunelens.serve.schemas import NO_NUL_PATTERN, error_body

__all__ = ["create_app", "content_security_policy"]


_UNION_TAG = re.compile(r"^[a-z_][a-z0-9_]*$")


def _error_param(err: dict[str, Any]) -> str:
    """The field an error is about: `messages.0.content`, without pydantic's union-member tags."""
    loc = [p for p in err.get("loc", ()) if p != "body"]
    if err.get("type") != "extra_forbidden":
        loc = [p for p in loc if isinstance(p, int) or (_UNION_TAG.match(p) and p not in ("str", "int", "float", "bool"))]
    return ".".join(str(p) for p in loc)


def _error_message(err: dict[str, Any]) -> str:
    kind = err.get("type")
    if kind == "string_unicode":
        return "must be valid Unicode text: lone UTF-16 surrogates (such as \\ud800) are not allowed"
    if kind == "string_pattern_mismatch" and (err.get("ctx") or {}).get("pattern") == NO_NUL_PATTERN:
        return "must not contain NUL characters (U+0000)"
    if kind == "json_invalid":
        return f"invalid JSON: {(err.get('ctx') or {}).get('error', err.get('msg'))}"
    return str(err.get("msg", "invalid value"))


def create_app(config: ServeConfig, preloaded: dict[str, Any] | None = None) -> FastAPI:
    """Build the app; `preloaded` maps model names to already loaded models (tests, benchmarks)."""
    runtime = Runtime(config, preloaded)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await runtime.start()
        yield
        await runtime.stop()

    docs = config.api_docs
    app = FastAPI(title="tunelens serve", version="1", lifespan=lifespan,
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None,
                  swagger_ui_oauth2_redirect_url="/docs/oauth2-redirect" if docs else None)
    app.state.runtime = runtime
    # Innermost first: CatchAll sees the app's exceptions; SecurityHeaders wraps every response, 413 included.
    app.add_middleware(CatchAll)
    app.add_middleware(BodySizeLimit, max_bytes=config.limits.max_body_bytes)
    app.add_middleware(SecurityHeaders, csp=content_security_policy(),
                       docs_paths=frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"}) if docs else frozenset())

    @app.exception_handler(APIError)
    async def _api_error(_request, exc: APIError):
        return JSONResponse(error_body(exc.message, exc.type, exc.code, exc.param), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request, exc: RequestValidationError):
        errors = exc.errors() or [{"loc": (), "msg": "invalid request"}]
        # A union field (`content: str | list[part]`) reports one error per alternative: the one that
        # got furthest into the value names the field best, so errors are ordered by depth.
        first_field = _error_param(errors[0]).split(".")[0]
        ranked = sorted(errors, key=lambda e: (_error_param(e).split(".")[0] != first_field,
                                               -len(_error_param(e).split("."))))
        parts: list[str] = []
        for e in ranked[:8]:
            part = f"{_error_param(e) or 'body'}: {_error_message(e)}"
            if part not in parts:
                parts.append(part)
        param = _error_param(ranked[0]) or None
        return JSONResponse(error_body("; ".join(parts[:5]), "invalid_request_error", "invalid_request", param), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc: StarletteHTTPException):
        detail = str(exc.detail)
        if exc.status_code == 405:
            detail = f"method {request.method} is not allowed here; allowed: {(exc.headers or {}).get('Allow', '')}"
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, str(exc.status_code))
        return JSONResponse(error_body(detail, "invalid_request_error", code), exc.status_code, headers=exc.headers)

    async def _storage_unavailable(_request, exc: Exception):
        reason = str(exc) if isinstance(exc, StorageUnavailable) else describe_storage_error(exc)
        if not isinstance(exc, StorageUnavailable):
            runtime.store.mark_failed(exc)
        return JSONResponse(error_body(f"storage unavailable: {reason}; nothing was stored, retry later",
                                       "server_error", "storage_unavailable"), 503, headers={"retry-after": "5"})

    app.add_exception_handler(StorageUnavailable, _storage_unavailable)
    for err_type in STORAGE_ERRORS:
        app.add_exception_handler(err_type, _storage_unavailable)

    @app.exception_handler(TunelensError)
    async def _tunelens(_request, exc: TunelensError):
        return JSONResponse(error_body(str(exc), "invalid_request_error", "bad_request"), 400)

    register_routes(app, runtime)
    from tunelens.serve.openapi import install_openapi

    install_openapi(app, config)
    return app
