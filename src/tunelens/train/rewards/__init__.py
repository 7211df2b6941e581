"""Reward plug-ins for GRPO (``method: grpo``), composed with weights in the ``grpo.rewards`` config.

One module per reward; :data:`REGISTRY` is the only list. See ``_base`` for the interface and
``docs/grpo.md`` for each reward's options.
"""

from tunelens.train.rewards._base import REGISTRY, Composed, Item, NoOptions, Reward, RewardError, register

__all__ = ["REGISTRY", "Composed", "Item", "NoOptions", "Reward", "RewardError", "register"]
