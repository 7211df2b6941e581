"""ROUGE-L (longest common subsequence) F-measure, as in Lin (2004) and Google's rouge-score.

Tokens: lower-cased runs of letters and digits (rouge-score's default tokenizer, no stemming).
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence, O(len(a) * len(b)) time, O(len(b)) memory."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str) -> dict[str, float]:
    """Precision, recall and F1 of ROUGE-L between a prediction and one reference."""
    pred, ref = tokenize(prediction), tokenize(reference)
    lcs = lcs_length(pred, ref)
    if lcs == 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    precision, recall = lcs / len(pred), lcs / len(ref)
    return {"precision": precision, "recall": recall, "f1": 2 * precision * recall / (precision + recall)}
