"""Built-in config presets. The embedded default is RunConfig's own defaults; ``--tiny`` shrinks it for CI."""

from __future__ import annotations

from typing import Any

# Tiny random model, small suite, few steps: every stage runs end to end in well under a minute.
# Dotted keys, so they merge into a config file's sections instead of replacing them.
TINY: dict[str, Any] = {
    "model": "tiny-random",
    "suite.n": 60,
    "train.max_steps": 4,
    "train.batch_size": 4,
    "train.max_length": 256,
    "train.save_steps": 2,
    "train.logging_steps": 1,
    "train.lora.r": 4,
    "train.lora.alpha": 8,
    "evaluate.suites": ["builtin"],
    "evaluate.limit": 20,
    "evaluate.max_new_tokens": 12,
    "evaluate.batch_size": 8,
    "explain.n_items": 1,
    "explain.focus_items": 2,
    "explain.faithfulness_items": 1,
    "explain.max_new_tokens": 6,
}
