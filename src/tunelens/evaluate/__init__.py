"""The evaluate stage: did tuning help? Suites, paired comparisons with bootstrap CIs, cost.

``evaluate(EvalConfig(...))`` runs every suite on every model and writes ``results.json``
(schema in docs/results-schema.md), ``samples.jsonl`` and ``report.html`` to ``output_dir``.
"""

from tunelens.evaluate.config import SUITES, EvalConfig, FewShotConfig, GenerationConfig, ModelEntry
from tunelens.evaluate.runner import SCHEMA, evaluate

__all__ = ["SCHEMA", "SUITES", "EvalConfig", "FewShotConfig", "GenerationConfig", "ModelEntry", "evaluate"]
