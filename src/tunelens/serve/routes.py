"""The HTTP routes: each one a thin skin over the API (`ChatHandler`, `store_feedback`, the drift monitor,
the A/B functions in `tunelens.serve.ab`), plus the UI pages and their static files."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel

from tunelens.serve.chat import ChatHandler
from tunelens.serve.completions import CompletionHandler
from tunelens.serve.db import Exchange, Feedback
from tunelens.serve.keys import Caller
from tunelens.serve.runtime import APIError, Runtime, require_caller, require_key, require_storage, write
from tunelens.serve.schemas import ChatRequest, CompletionRequest, FeedbackRequest, safe_text

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_FILES = frozenset(p.name for p in STATIC_DIR.iterdir() if p.is_file())  # the only names /static serves


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded"]
    models: list[str]
    storage: dict[str, Any]


def store_feedback(rt: Runtime, fb: FeedbackRequest, caller: Caller) -> int:
    """Store feedback on one of the caller's completions (any completion for an admin key); its id."""
    if fb.rating is None and fb.correction is None and fb.preferred is None:
        raise APIError(400, "feedback needs at least one of rating, correction, preferred",
                       "invalid_request_error", "empty_feedback")
    rating, scale = None, None
    if fb.rating is not None:
        rating, scale = ({"up": 1, "down": -1}[fb.rating], "thumbs") if isinstance(fb.rating, str) else (fb.rating, "1-5")

    def save() -> int:
        with rt.store.session.begin() as s:
            ex = s.get(Exchange, fb.completion_id)
            # Another key's completion answers exactly like a missing one: ids are not confirmed to strangers.
            if ex is None or not (caller.is_admin or ex.api_key_id == caller.id):
                raise APIError(404, f"no completion with id {fb.completion_id!r} for this key", "invalid_request_error",
                               "completion_not_found", "completion_id")
            # correction and preferred are redacted by their column type (RedactedText)
            row = Feedback(exchange_id=fb.completion_id, api_key_id=caller.id, rating=rating, rating_scale=scale,
                           correction=fb.correction, preferred=fb.preferred)
            s.add(row)
            s.flush()
            return row.id

    return rt.write(save)


async def server_sent_events(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
    """`data: <json>` per chunk, then `data: [DONE]`; an error object ends the stream without [DONE]."""
    async for chunk in chunks:
        yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
        if "error" in chunk:
            return
    yield "data: [DONE]\n\n"


def register_routes(app: FastAPI, runtime: Runtime) -> None:
    chat = ChatHandler(runtime)
    app.state.chat = chat
    completions = CompletionHandler(runtime)

    @app.get("/health", responses={503: {"model": HealthResponse, "description": "storage is unavailable (degraded)"}},
             response_model=HealthResponse)
    async def health():
        error = await asyncio.to_thread(runtime.store.probe_write)
        body = {"status": "ok" if error is None else "degraded", "models": sorted(runtime.models),
                "storage": {"writable": error is None, "error": error}}
        return JSONResponse(body, 200 if error is None else 503)

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/ab", include_in_schema=False)
    async def ab_page():
        return FileResponse(STATIC_DIR / "ab.html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        # Only the files shipped in static/ by exact name: no path arithmetic on client input at all.
        if name not in STATIC_FILES:
            raise APIError(404, f"no static file {safe_text(name)!r}", "invalid_request_error", "not_found", "name")
        return FileResponse(STATIC_DIR / name)

    @app.get("/v1/models")
    async def models(_key: str = Depends(require_key)):
        return {"object": "list", "data": [
            {"id": m.name, "object": "model", "created": 0, "owned_by": "tunelens", "tunelens": {"model_id": m.model_id}}
            for m in runtime.models.values()]}

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatRequest, key_id: str = Depends(require_key)):
        out = await chat.create(req, key_id)
        if isinstance(out, dict):
            return out
        return StreamingResponse(server_sent_events(out), media_type="text/event-stream")

    @app.post("/v1/completions")
    async def text_completions(req: CompletionRequest, key_id: str = Depends(require_key)):
        out = await completions.create(req, key_id)
        if isinstance(out, dict):
            return out
        return StreamingResponse(server_sent_events(out), media_type="text/event-stream")

    @app.post("/v1/feedback")
    async def feedback(fb: FeedbackRequest, caller: Caller = Depends(require_caller)):
        fid = await asyncio.to_thread(store_feedback, runtime, fb, caller)
        return {"id": fid, "object": "feedback", "completion_id": fb.completion_id}

    @app.get("/v1/monitor")
    async def monitor(_key: str = Depends(require_key)):
        if runtime.drift is None:
            reason = runtime.drift_error or "no training records configured (drift.train_records)"
            raise APIError(409, f"drift monitoring is off: {reason}", "invalid_request_error", "monitor_not_configured")
        from tunelens.serve.drift import live_prompts

        cfg = runtime.config.drift
        prompts = await asyncio.to_thread(live_prompts, runtime.store, cfg.window)
        return await asyncio.to_thread(runtime.drift.report, prompts, cfg)

    from tunelens.serve.ab import register_ab

    register_ab(app, runtime, require_caller, APIError, require_storage, write)
