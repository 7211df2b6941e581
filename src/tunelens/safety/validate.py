"""Validate a refusal or harm instrument, an LLM judge included, on the project's labelled test split.

``validate(task, instrument)`` classifies the test half of ``safety/data/replies_labelled.jsonl``
(never trained on by the offline instruments) and returns a card: precision, recall and F1 with
bootstrap intervals, per model family, the operating point the rate correction uses
(``tunelens.safety.instruments.correction``), and the worst errors. It is how a judge gets a card:
``tunelens safety validate --task refusal --judge URL -o judge-card.json``; the offline instruments'
own cards come from their training scripts, and this gives the same figures for them.

Verdicts that errored (a judge that failed or could not be parsed twice) are counted and listed,
and left out of the figures; the card says how many.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunelens.errors import TunelensError
from tunelens.safety.labelled import load_labelled
from tunelens.safety.train_metrics import binary_metrics, bootstrap_ci

TASKS = ("refusal", "harm")
SEED = 13


def _gold(task: str, row: dict[str, Any]) -> bool | None:
    if task == "refusal":
        return None if row["refusal"] == "ambiguous" else row["refusal"] != "full_compliance"
    return None if row["harm"] == "ambiguous" else row["harm"] == "harmful"


def rows_for(task: str, data_dir: str | Path | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """The labelled test rows with a definite label for ``task`` (the first ``limit`` of them)."""
    rows = [r for r in load_labelled(data_dir, split="test") if _gold(task, r) is not None]
    return rows[:limit] if limit else rows


def validate(task: str, instrument: Any, *, data_dir: str | Path | None = None, limit: int | None = None,
             batch_size: int = 32, progress: Callable[[int], None] | None = None,
             rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The card of ``instrument`` (an ``Instrument`` of ``task``) from the labelled test split
    (``rows``: that split as ``rows_for`` gives it, when the caller already has it)."""
    if task not in TASKS:
        raise TunelensError(f"validate: task must be one of {', '.join(TASKS)}, got {task!r}")
    if instrument.task != task:
        raise TunelensError(f"validate: the instrument does {instrument.task!r}, not {task!r}")
    from tunelens.safety.instruments import Example

    rows = rows_for(task, data_dir, limit) if rows is None else rows
    if not rows:
        raise TunelensError("validate: no labelled test rows to score")
    t0 = time.time()
    verdicts = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        verdicts += instrument.classify([Example(r["text"], r["prompt"]) for r in chunk])
        if progress:
            progress(len(chunk))
    wall = time.time() - t0
    errors = [(r, v) for r, v in zip(rows, verdicts) if v.label not in instrument.labels]
    scored = [(r, v) for r, v in zip(rows, verdicts) if v.label in instrument.labels]
    if not scored:
        raise TunelensError(f"validate: every one of {len(rows)} verdicts failed; first: {errors[0][1].detail}")
    gold = [bool(_gold(task, r)) for r, _ in scored]
    pred = [instrument.is_positive(v) for _, v in scored]
    pooled = binary_metrics(gold, pred)
    by_group = {}
    for fam in sorted({r["family"] for r, _ in scored}):
        idx = [i for i, (r, _) in enumerate(scored) if r["family"] == fam]
        by_group[fam] = binary_metrics([gold[i] for i in idx], [pred[i] for i in idx])

    def ex(items: list[tuple[dict[str, Any], Any]]) -> list[dict[str, Any]]:
        return [{"family": r["family"], "prompt": r["prompt"][:160], "text": r["text"][:200],
                 "gold": r[task if task == "refusal" else "harm"], "label": v.label, "score": round(float(v.score), 3)}
                for r, v in items[:4]]

    fn = [(r, v) for (r, v), g, p in zip(scored, gold, pred) if g and not p]
    fp = [(r, v) for (r, v), g, p in zip(scored, gold, pred) if p and not g]
    name = f"judge:{instrument.model}" if type(instrument).name == "judge" else (type(instrument).name or task)
    return {
        "task": task, "name": name, "version": 1,
        "validation": [{
            "set": "labelled test split (safety/data/replies_labelled.jsonl)",
            "labeller": "labelled by an AI assistant (Claude), see docs/instruments/labelling-guide.md",
            **{k: pooled[k] for k in ("n", "n_pos", "n_neg", "tp", "fp", "fn", "tn", "precision", "recall", "f1", "accuracy")},
            "ci95": bootstrap_ci(gold, pred, seed=SEED), "by_group": by_group,
            "errored": len(errors), "errored_examples": [{"family": r["family"], "detail": v.detail} for r, v in errors[:4]],
        }],
        "operating_point": {"sensitivity": pooled["recall"], "specificity": pooled["specificity"],
                            "n_pos": pooled["n_pos"], "n_neg": pooled["n_neg"],
                            "note": "pooled over the labelled test split"},
        "failure_modes": [{"mode": "positives missed (false negatives)", "count": len(fn), "examples": ex(fn)},
                          {"mode": "negatives flagged (false positives)", "count": len(fp), "examples": ex(fp)}],
        "wall_s": round(wall, 1),
    }
