"""tunelens.data: import instruction data with provenance and curate it.

- :func:`load_records` (importers): files / ``hf:`` ids -> canonical record dicts + malformed rows;
- :func:`curate`: the curation pipeline writing curated / rejects / changes / datasheet;
- :class:`CurateConfig`: every step's settings (YAML-loadable);
- :func:`redact`: PII redaction with typed placeholders (reused by the serve guardrails).
"""

from tunelens.data.config import CurateConfig
from tunelens.data.curate import CurateReport, curate
from tunelens.data.importers import ImportResult, load_records
from tunelens.data.pii import redact

__all__ = ["CurateConfig", "CurateReport", "ImportResult", "curate", "load_records", "redact"]
