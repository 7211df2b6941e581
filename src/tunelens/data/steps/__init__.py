"""Curation steps, one module each (or a pair: dedup, rewrite), found here rather than listed.

A step is a class decorated with ``@register`` (see base): it names itself, its place in the
pipeline and its CurateConfig section. :func:`all_steps` imports every module of this package and
returns the registered steps in pipeline order; ``curate`` builds its pipeline from them, so adding
a step is adding a module (and its test). The modules are imported on the first call, not when this
package is imported: importing one step module (for its config model, say) imports no other.
"""

from __future__ import annotations

from pydantic import BaseModel

from tunelens.data.steps.base import (
    REGISTRY,
    BuildContext,
    Change,
    FilterStep,
    InvariantError,
    Reason,
    Rejection,
    Step,
    StepResult,
    check_partition,
    register,
    registered,
)

__all__ = [
    "BuildContext", "Change", "FilterStep", "InvariantError", "Reason", "Rejection", "Step", "StepResult",
    "all_steps", "check_partition", "config_sections", "register",
]


def all_steps() -> list[type[Step]]:
    """Every registered curation step, in pipeline order."""
    REGISTRY.load()
    return registered()


def config_sections() -> dict[str, type[BaseModel]]:
    """The CurateConfig section of every step, by YAML key, in pipeline order (dedup configures two)."""
    sections: dict[str, type[BaseModel]] = {}
    for step in all_steps():
        other = sections.setdefault(step.config_key, step.config_model)
        if other is not step.config_model:
            raise TypeError(f"steps disagree on the model of config section {step.config_key!r}: "
                            f"{other.__name__} and {step.config_model.__name__}")
    return sections
