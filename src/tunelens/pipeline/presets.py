"""Built-in config presets. The embedded default is RunConfig's own defaults; ``--tiny`` shrinks it for CI,
``--quick`` for a first look (same model and suites, fewer steps and items: wide CIs, and the run says so)."""

from __future__ import annotations

from typing import Any

# Tiny random model, small suite, few steps: every stage runs end to end in well under a minute.
# Dotted keys, so they merge into a config file's sections instead of replacing them.
TINY: dict[str, Any] = {
    "preset": "tiny",
    "model": "tiny-random",
    "suite.n": 60,
    # The suite alone (all families, no real-data mix): no data folder needed, seconds to curate.
    "suite.exclude_families": [],
    "data.mix": {},
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
    "explain.faithfulness_random": 2,
    "explain.max_new_tokens": 6,
}

# The default run in about 5 minutes on an idle 2-core CPU: the same model, suites and guards with
# fewer training steps and about a fifth of the evaluation items. Its CIs are wide, so most
# differences come out "not concluded"; the summary and report say so (summary.QUICK_NOTE).
QUICK: dict[str, Any] = {
    "preset": "quick",
    "name": "quick",
    "train.max_steps": 30,
    "train.save_steps": 15,
    "evaluate.limit": 100,  # builtin: the test+heldout part of a size-100 suite, 30 items
    # Sized so the whole run stays under 5 minutes on the idle 2-core machine (30 items per suite measured 4-6 min).
    "evaluate.limits": {"ifeval": 24, "harmful": 24, "over_refusal": 24, "truthfulqa_mc": 24, "bbq": 36},
    "explain.n_items": 1,
    "explain.focus_items": 8,
    "explain.faithfulness_items": 1,
}
