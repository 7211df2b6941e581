"""The server generates through a configured backend (tunelens.generate.backends)."""

from __future__ import annotations

import asyncio

import pytest

from tunelens.generate import GenerationParams, GenerationResult
from tunelens.serve.batching import MicroBatcher
from tunelens.serve.config import ServeConfig


class FakeBackend:
    name = "fake"

    def __init__(self):
        self.calls: list[int] = []
        self.closed = False

    def generate(self, prompts, params, progress=False):
        self.calls.append(len(prompts))
        return [GenerationResult(f"reply {i}", 3, 2, "eos", 0.01) for i, _ in enumerate(prompts)]

    def close(self):
        self.closed = True


def test_batcher_generates_and_streams_through_the_backend():
    backend = FakeBackend()

    async def main():
        b = MicroBatcher(model=None, tokenizer=None, max_batch_size=4, max_wait_ms=50, backend=backend)
        await b.start()
        prompt = [{"role": "user", "content": "hi"}]
        results = await asyncio.gather(*(b.submit(prompt, GenerationParams(max_new_tokens=4)) for _ in range(3)))
        streamed = [x async for x in b.stream(prompt, GenerationParams(max_new_tokens=4))]
        await b.stop()
        return results, streamed

    results, streamed = asyncio.run(main())
    assert [r.text for r in results] == ["reply 0", "reply 1", "reply 2"] and backend.calls[0] == 3
    # a backend without token streaming: the whole reply as one delta, then the same result
    assert streamed[0] == "reply 0" and isinstance(streamed[-1], GenerationResult) and streamed[-1].text == "reply 0"
    assert backend.closed


def test_backend_is_a_validated_setting():
    cfg = ServeConfig.model_validate({"models": [{"name": "m", "path": "tiny-random"}],
                                      "batching": {"backend": "llamacpp", "quant": "f16"}})
    assert (cfg.batching.backend, cfg.batching.quant) == ("llamacpp", "f16")
    with pytest.raises(ValueError, match="backend"):
        ServeConfig.model_validate({"models": [{"name": "m", "path": "tiny-random"}], "batching": {"backend": "onnx"}})
