"""Shared fixtures: the real data folder, and the tiny / SmolLM2 models (built once per cache)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the project root (real public datasets, read-only)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real data folder not found at {SHARED_DATA}; it must sit beside the project as ../shared")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    """A tiny random Llama checkpoint with SmolLM2's tokenizer (cached under TUNELENS_CACHE)."""
    from tunelens.models import resolve_model

    path, _, _ = resolve_model("tiny-random", progress=False)
    return path


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The embedded default model, converted once from its GGUF."""
    from tunelens.models import resolve_model

    path, _, _ = resolve_model("smollm2-135m", progress=False)
    return path


@pytest.fixture(autouse=True, scope="session")
def _limit_threads():
    # Two cores on CI: keep torch from oversubscribing when tests start subprocesses.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    from _toy import one_thread

    with one_thread():
        yield


@pytest.fixture(scope="session")
def trigger_model():
    """The toy model whose answer one prompt token decides (trained once, shared; do not train it further).

    The explain tests look for the planted trigger, so the model must have learned it on every CPU
    kind, not just on one: every answer token must win by a clear margin (3.76 nats at worst over
    these 20 prompts, measured on AVX-512 and with the portable kernels; 1.0 required). If this
    fails, the training is borderline on this CPU, not the attribution wrong.
    """
    import random

    from _numerics import answer_margins
    from _toy import one_thread, trained_trigger_model, trigger_example

    with one_thread():
        model, tok = trained_trigger_model()
        rng = random.Random(99)
        worst = min(min(answer_margins(model, tok, msgs + [{"role": "assistant", "content": answer}]))
                    for msgs, answer, _ in (trigger_example(rng) for _ in range(20)))
    assert worst > 1.0, f"the toy trigger model did not learn its task on this CPU (worst answer margin {worst:.3f})"
    return model, tok


@pytest.fixture(scope="module")
def tiny_loaded(tiny_model_path):
    """The tiny model loaded once per module (tests/_serve.make_app serves it)."""
    from tunelens.models import load_model

    return load_model(str(tiny_model_path))
