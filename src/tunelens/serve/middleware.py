"""ASGI middleware around the whole app: body-size limit (413), a JSON 500 that keeps the connection,
and security headers (CSP, no framing, no sniffing, no referrer) on every response."""

from __future__ import annotations

import json
import logging

from tunelens.serve.schemas import error_body

log = logging.getLogger("tunelens.serve")


class BodySizeLimit:
    """Pure ASGI middleware: 413 for bodies over the limit, declared or streamed."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._reject(send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                chunks.append(message)
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return await self._reject(send)
            chunks.append(message)
            if not message.get("more_body"):
                break
        body = b"".join(c.get("body", b"") for c in chunks if c["type"] == "http.request")
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _reject(self, send):
        payload = json.dumps(error_body(f"request body exceeds {self.max_bytes} bytes", "invalid_request_error",
                                        "request_too_large")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


class CatchAll:
    """Pure ASGI middleware: an unhandled exception becomes a JSON 500 *without* re-raising.

    Starlette's ServerErrorMiddleware re-raises after answering, and uvicorn then closes the
    connection, so the next request on the same keep-alive connection was reset. Here the
    traceback is logged and the connection stays usable. A response already under way (a
    stream) is ended cleanly instead."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = {"started": False, "done": False}

        async def tracking_send(message):
            if message["type"] == "http.response.start":
                state["started"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                state["done"] = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not state["started"]:
                payload = json.dumps(error_body(f"internal error: {type(exc).__name__}", "server_error",
                                                "internal_error")).encode()
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(payload)).encode())]})
                await send({"type": "http.response.body", "body": payload})
            elif not state["done"]:
                await send({"type": "http.response.body", "body": b"", "more_body": False})


def content_security_policy() -> str:
    """The app's policy. The explain heatmap (`explain_view`) is shown in a sandboxed srcdoc iframe,
    which inherits this policy: its one <style> block is allowed by its hash."""
    from tunelens.serve.explain_view import STYLE_HASH

    style = f"'self' {STYLE_HASH}"
    return ("default-src 'none'; script-src 'self'; style-src " + style + "; img-src 'self' data:; "
            "connect-src 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


# /docs and /redoc (only when `api_docs: true`) load Swagger UI / ReDoc from a CDN.
DOCS_CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https:; "
            "font-src https://fonts.gstatic.com; worker-src blob:; connect-src 'self'; frame-ancestors 'none'; "
            "base-uri 'none'; form-action 'none'")


class SecurityHeaders:
    """Pure ASGI middleware: CSP, no framing, no MIME sniffing, no referrer, on every response."""

    def __init__(self, app, csp: str, docs_paths: frozenset[str] = frozenset()):
        self.app = app
        self.docs_paths = docs_paths
        self.common = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                       (b"referrer-policy", b"no-referrer"), (b"cross-origin-opener-policy", b"same-origin")]
        self.csp, self.docs_csp = csp.encode(), DOCS_CSP.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        csp = self.docs_csp if scope.get("path") in self.docs_paths else self.csp

        async def with_headers(message):
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.common if k not in present]
                if b"content-security-policy" not in present:
                    extra.append((b"content-security-policy", csp))
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        return await self.app(scope, receive, with_headers)
