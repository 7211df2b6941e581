"""Micro-batching: concurrent requests are collected for a few ms and generated together.

One worker per served model owns a single-thread executor, so the model never runs two
``generate`` calls at once; requests with identical generation parameters share a batch.

One request never fails another: when a batch of several requests raises, each of them is run
again on its own, so only the request that causes the error gets it. A request submitted
``alone`` (seeded sampling) is generated in a batch of its own, so its output depends on its
seed and prompt only, never on which requests arrived with it; other requests share batches
whatever their seeds (greedy output ignores the seed; unseeded sampling takes the batch's).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass, field, replace
from typing import Any

from tunelens.generate import GenerationParams, GenerationResult, generate, stream_generate


@dataclass
class _Pending:
    prompt: list[dict[str, str]]
    params: GenerationParams
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)
    alone: bool = False


def _group_key(params: GenerationParams) -> tuple:
    # The seed is not part of the key: greedy output ignores it, and a request whose seed matters
    # (seeded sampling) is submitted alone; unseeded sampled requests share the batch's seed.
    params = replace(params, seed=0)
    return tuple(tuple(v) if isinstance(v, list) else v for v in astuple(params))


class MicroBatcher:
    """``backend``: a ``tunelens.generate.backends.Backend`` to generate with instead of the HF
    engine on ``model`` (which explain and token counting still use). It streams by generating the
    whole reply first and sending it as one delta, then the same GenerationResult."""

    def __init__(self, model: Any, tokenizer: Any, max_batch_size: int = 8, max_wait_ms: float = 10.0,
                 backend: Any = None):
        self.model = model
        self.tokenizer = tokenizer
        self.backend = backend if backend is not None and getattr(backend, "name", "hf") != "hf" else None
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tunelens-gen")
        self.queue: asyncio.Queue[_Pending] | None = None
        self.task: asyncio.Task | None = None
        self.batches_run = 0
        self.requests_run = 0
        self.isolation_retries = 0  # batches that failed and were rerun one request at a time

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.backend is not None:
            self.backend.close()

    async def submit(self, prompt: list[dict[str, str]] | str, params: GenerationParams,
                     alone: bool = False) -> GenerationResult:
        if self.queue is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put(_Pending(prompt, params, fut, alone=alone))
        return await fut

    async def _collect(self) -> list[_Pending]:
        first = await self.queue.get()
        batch = [first]
        deadline = time.perf_counter() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _loop(self) -> None:
        while True:
            batch = await self._collect()
            groups: dict[tuple, list[_Pending]] = {}
            for item in batch:
                groups.setdefault(("alone", id(item)) if item.alone else _group_key(item.params), []).append(item)
            for items in groups.values():
                live = [i for i in items if not i.future.done()]  # client may have gone away
                if not live:
                    continue
                try:
                    await self._run_group(live)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # never let the worker die: every waiting request gets an answer
                    for item in live:
                        if not item.future.done():
                            item.future.set_exception(exc)

    def _generate(self, prompts: list, params: GenerationParams) -> list[GenerationResult]:
        if self.backend is not None:
            return self.backend.generate(prompts, params)
        return generate(self.model, self.tokenizer, prompts, params)

    async def _run_group(self, live: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        params = live[0].params
        try:
            results = await loop.run_in_executor(self.executor, self._generate, [i.prompt for i in live], params)
        except Exception as exc:
            if len(live) == 1:
                if not live[0].future.done():
                    live[0].future.set_exception(exc)
                return
            # One bad request must not fail the rest: rerun each on its own.
            self.isolation_retries += 1
            for item in live:
                if item.future.done():
                    continue
                try:
                    (result,) = await loop.run_in_executor(self.executor, self._generate, [item.prompt], params)
                except Exception as one_exc:
                    if not item.future.done():
                        item.future.set_exception(one_exc)
                else:
                    self.batches_run += 1
                    self.requests_run += 1
                    if not item.future.done():
                        item.future.set_result(result)
            return
        self.batches_run += 1
        self.requests_run += len(live)
        for item, result in zip(live, results):
            if not item.future.done():
                item.future.set_result(result)

    async def stream(self, prompt: list[dict[str, str]], params: GenerationParams
                     ) -> AsyncIterator[str | GenerationResult]:
        """Text deltas for one prompt, produced on the model's own executor thread, and last of all
        the prompt's GenerationResult: the same one `submit` gives (token counts, finish reason)."""
        loop = asyncio.get_running_loop()
        out: asyncio.Queue = asyncio.Queue()
        cancelled = threading.Event()

        def work() -> None:
            if self.backend is not None:  # whole reply, then its result: one delta
                try:
                    (result,) = self.backend.generate([prompt], params)
                    if result.text:
                        loop.call_soon_threadsafe(out.put_nowait, result.text)
                    loop.call_soon_threadsafe(out.put_nowait, result)
                except Exception as exc:
                    loop.call_soon_threadsafe(out.put_nowait, exc)
                return
            stream = stream_generate(self.model, self.tokenizer, prompt, params)
            try:
                for delta in stream:
                    if cancelled.is_set():  # client went away: closing the stream stops the model
                        return
                    loop.call_soon_threadsafe(out.put_nowait, delta)
                loop.call_soon_threadsafe(out.put_nowait, stream.result)
            except Exception as exc:
                loop.call_soon_threadsafe(out.put_nowait, exc)
            finally:
                stream.close()

        fut = loop.run_in_executor(self.executor, work)
        try:
            while True:
                item = await out.get()
                if isinstance(item, Exception):
                    raise item
                yield item
                if isinstance(item, GenerationResult):
                    break
        finally:
            cancelled.set()
            await asyncio.shield(fut)
