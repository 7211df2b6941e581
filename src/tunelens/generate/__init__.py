"""The shared generation engine: eval, explain and serve all generate through here.

Batched with left padding and the KV cache; prompts are sorted by length so batches carry
little padding; greedy or seeded sampling; stops on EOS, on stop strings, or at
``max_new_tokens``; applies the model's own chat template. ``stream_generate`` yields text as it
is made and ends with the same ``GenerationResult`` that ``generate`` returns.
"""

from tunelens.generate.engine import (
    GenerationParams,
    GenerationStream,
    GenerationResult,
    PromptTooLongError,
    context_limit,
    generate,
    render_prompt,
    stream_generate,
)

__all__ = [
    "GenerationParams",
    "GenerationStream",
    "GenerationResult",
    "PromptTooLongError",
    "context_limit",
    "generate",
    "render_prompt",
    "stream_generate",
]
