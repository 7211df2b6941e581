"""PII redaction for the curation ``pii`` step: the redactor itself lives on the safety floor.

:mod:`tunelens.safety.pii` holds the patterns, the checks and the evaluation figures
(``docs/instruments/pii.md``); the curation step (``data/steps/rewrite.py``), the server's
guardrails and ``tunelens safety redact`` all use it. This module keeps the names the data stage
has always imported.
"""

from __future__ import annotations

from tunelens.safety.pii import (
    DEFAULT_TYPES,
    PII_TYPES,
    Entity,
    find_pii,
    iban_ok,
    luhn_ok,
    redact,
    redact_many,
    redact_spans,
)

__all__ = ["DEFAULT_TYPES", "PII_TYPES", "Entity", "find_pii", "iban_ok", "luhn_ok", "redact", "redact_many",
           "redact_spans"]
