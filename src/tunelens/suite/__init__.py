"""The built-in verifiable instruction suite.

Procedurally generated instruction tasks whose responses are all checkable by code, written by
this project (no download). Families: format constraints, extraction, list transformation,
arithmetic word problems ("reasoning, then Answer: N"), classification with a justification,
and safety (harmful requests to refuse, benign look-alikes to answer). Splits: ``train``,
``test`` (unseen instances of trained templates) and ``heldout`` (whole families never trained).
"""

from tunelens.suite import checkers
from tunelens.suite.build import LICENSE, SOURCE, SPLITS, eval_items, generate_suite, score, split_sizes, summarise, train_records
from tunelens.suite.families import FAMILIES, HELDOUT_FAMILIES, TRAINED_FAMILIES
from tunelens.suite.io import write_suite

__all__ = [
    "FAMILIES",
    "HELDOUT_FAMILIES",
    "LICENSE",
    "SOURCE",
    "SPLITS",
    "TRAINED_FAMILIES",
    "checkers",
    "eval_items",
    "generate_suite",
    "score",
    "split_sizes",
    "summarise",
    "train_records",
    "write_suite",
]
