"""Curation steps. Each has a ``name`` and ``run(records) -> StepResult`` (see base)."""

from tunelens.data.steps.base import Change, InvariantError, Rejection, Step, StepResult, check_partition
from tunelens.data.steps.decontam import Decontaminate
from tunelens.data.steps.dedup import ExactDedup, NearDedup
from tunelens.data.steps.licence import LicensePolicy
from tunelens.data.steps.quality import Quality
from tunelens.data.steps.rewrite import Normalise, RedactPii
from tunelens.data.steps.toxicity import Toxicity, resolve_scorer
from tunelens.data.steps.validate import Validate

__all__ = [
    "Change", "Decontaminate", "ExactDedup", "InvariantError", "LicensePolicy", "NearDedup", "Normalise",
    "Quality", "RedactPii", "Rejection", "Step", "StepResult", "Toxicity", "Validate", "check_partition",
    "resolve_scorer",
]
