"""What every request handler shares: the served models, the store, guardrails and limiter (`Runtime`);
API errors; API-key authentication and rate limiting; storage writes that turn an outage into a 503."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from fastapi import Request

from tunelens.errors import TunelensError
from tunelens.serve.batching import MicroBatcher
from tunelens.serve.config import ServeConfig
from tunelens.serve.db import STORAGE_ERRORS, Store, StorageUnavailable, describe_storage_error
from tunelens.serve.guardrails import GuardrailEngine
from tunelens.serve.keys import Caller, authenticate
from tunelens.serve.ratelimit import TokenBucketLimiter

log = logging.getLogger("tunelens.serve")

T = TypeVar("T")


class APIError(Exception):
    """An error answered as JSON in OpenAI's shape, with this HTTP status."""

    def __init__(self, status: int, message: str, type_: str, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers


@dataclass
class ServedModel:
    name: str
    model_id: str
    loaded: Any  # tunelens.models.LoadedModel
    batcher: MicroBatcher


class Runtime:
    """Everything the request handlers share; started and stopped by the app's lifespan."""

    def __init__(self, config: ServeConfig, preloaded: dict[str, Any] | None = None):
        self.config = config
        self.preloaded = preloaded or {}
        self.store = Store(config.db_url)
        self.guards = GuardrailEngine(config.guardrails)
        rl = config.rate_limit
        self.limiter = TokenBucketLimiter(rl.requests_per_minute, rl.burst) if rl.enabled else None
        self.models: dict[str, ServedModel] = {}
        self.drift = None
        self.drift_error: str | None = None

    async def start(self) -> None:
        from tunelens.models import load_model

        if self.config.torch_threads:
            import torch

            torch.set_num_threads(self.config.torch_threads)

        for entry in self.config.models:
            loaded = self.preloaded.get(entry.name)
            if loaded is None:
                loaded = await asyncio.to_thread(load_model, entry.path)
            b = self.config.batching
            backend = None
            if b.backend != "hf":
                from tunelens.generate.backends import load_backend

                backend = await asyncio.to_thread(load_backend, entry.path, b.backend, quant=b.quant, progress=False,
                                                  say=lambda line, n=entry.name: log.info("%s: %s", n, line))
            batcher = MicroBatcher(loaded.model, loaded.tokenizer, b.max_batch_size, b.max_wait_ms, backend=backend)
            await batcher.start()
            model_id = loaded.model_id or str(loaded.path)
            if getattr(loaded, "revision", None):
                model_id = f"{model_id}@{loaded.revision}"
            self.models[entry.name] = ServedModel(entry.name, model_id, loaded, batcher)
        if self.config.drift.train_records:
            from tunelens.serve.drift import DriftMonitor

            try:
                self.drift = await asyncio.to_thread(DriftMonitor.from_records, self.config.drift.train_records)
            except TunelensError as exc:
                self.drift_error = str(exc)

    async def stop(self) -> None:
        for m in self.models.values():
            await m.batcher.stop()
        self.store.close()

    def model(self, name: str) -> ServedModel:
        if name not in self.models:
            raise APIError(404, f"model {name!r} is not served here; available: {sorted(self.models)}",
                           "invalid_request_error", "model_not_found", "model")
        return self.models[name]

    # -- storage -----------------------------------------------------------------------------
    async def require_storage(self) -> None:
        """503 (StorageUnavailable) before any generation is spent when the database cannot take a write."""
        await asyncio.to_thread(self.store.require_writable)

    def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a storage write; a database outage becomes StorageUnavailable (503) and marks the store degraded."""
        try:
            return fn(*args)
        except STORAGE_ERRORS as exc:
            self.store.mark_failed(exc)
            raise StorageUnavailable(describe_storage_error(exc)) from exc


# -- FastAPI dependencies ----------------------------------------------------------------------
def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime


async def require_caller(request: Request) -> Caller:
    """The caller named by `Authorization: Bearer <key>` (401 if none or invalid; 429 over its rate)."""
    rt = runtime_of(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise APIError(401, "missing API key: send 'Authorization: Bearer <key>'", "authentication_error", "missing_api_key")
    caller = await asyncio.to_thread(authenticate, rt.store, token.strip())
    if caller is None:
        raise APIError(401, "invalid or revoked API key", "authentication_error", "invalid_api_key")
    if rt.limiter is not None:
        wait = rt.limiter.acquire(caller.id)
        if wait > 0:
            raise APIError(429, f"rate limit exceeded for this key; retry in {wait:.1f}s", "rate_limit_error",
                           "rate_limit_exceeded", headers={"retry-after": str(max(1, round(wait)))})
    return caller


async def require_key(request: Request) -> str:
    """The authenticated key's id (see `require_caller` for its role)."""
    return (await require_caller(request)).id


# The A/B routes take these as functions of the runtime.
async def require_storage(rt: Runtime) -> None:
    await rt.require_storage()


def write(rt: Runtime, fn: Callable[..., T], *args: Any) -> T:
    return rt.write(fn, *args)
