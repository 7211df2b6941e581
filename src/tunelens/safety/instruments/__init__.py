"""Safety instruments: refusal, harm, toxicity and injection classifiers with known error.

See ``_base.py`` for the interface; one module per instrument registers itself.
"""

from tunelens.safety.instruments._base import (
    REGISTRY,
    TASKS,
    Example,
    Instrument,
    Verdict,
    get_instrument,
    register,
)

__all__ = ["REGISTRY", "TASKS", "Example", "Instrument", "Verdict", "get_instrument", "register"]
