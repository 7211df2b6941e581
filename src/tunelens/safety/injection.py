"""Prompt-injection detection (the old API): wrappers over the injection instrument.

``load_detector().detect(texts)`` scores texts with
:class:`tunelens.safety.instruments.injection.InjectionInstrument` (views: normalised text with
leetspeak restored, hidden HTML/markdown parts, decoded base64, sentence windows; phrase rules in
several languages; trained by ``tunelens safety train-injection``, figures in
``instruments/cards/injection.json`` and ``docs/instruments/injection.md``).

``train_injection`` trains a classifier on *your* labelled JSONL (``{"text", "label"}``) plus benign
instruction files, read through the same views and rules; the shipped artifact comes from
:func:`tunelens.safety.train_injection.train`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from tunelens.errors import TunelensError
from tunelens.safety.instruments.injection import ARTIFACT as DEFAULT_ARTIFACT
from tunelens.safety.instruments.injection import DEFAULT_THRESHOLD, RULE_SCORE, RULES, rule_hits

DEFAULT_METRICS = DEFAULT_ARTIFACT.with_name("injection_metrics.json")
HEURISTIC_SCORE = RULE_SCORE
HEURISTICS = RULES

__all__ = ["DEFAULT_ARTIFACT", "DEFAULT_THRESHOLD", "InjectionDetector", "InjectionResult", "heuristic_hits",
           "load_detector", "train_injection"]


@dataclass
class InjectionResult:
    score: float
    model_score: float
    heuristics: list[str] = field(default_factory=list)
    flagged: bool = False
    view: str = "text"  # the view that gave the score: text, hidden, base64 or window

    def to_dict(self) -> dict:
        return asdict(self)


def heuristic_hits(text: str) -> list[str]:
    """Names of the phrase rules that match ``text``."""
    return rule_hits(text)


class InjectionDetector:
    """Scores texts for prompt injection through the instrument (views, classifier, rules)."""

    def __init__(self, instrument):
        self.instrument = instrument
        self.threshold = instrument.threshold

    def detect(self, texts: list[str], threshold: float | list[float] | None = None) -> list[InjectionResult]:
        """Score ``texts``; flag those at or above ``threshold`` (default: the validated one), which may be one
        threshold per text (the server's ``tool_threshold`` for tool turns and documents)."""
        if not texts:
            return []
        thr = self.threshold if threshold is None else threshold
        per = list(thr) if isinstance(thr, (list, tuple)) else [thr] * len(texts)
        if len(per) != len(texts):
            raise ValueError(f"detect: {len(per)} thresholds for {len(texts)} texts")
        return [InjectionResult(score=round(r["score"], 4), model_score=round(r["model_score"], 4), heuristics=r["rules"],
                                flagged=r["score"] >= t, view=r["view"])
                for r, t in zip(self.instrument.score_texts(list(texts)), per)]


@lru_cache(maxsize=4)
def load_detector(path: str | Path = DEFAULT_ARTIFACT) -> InjectionDetector:
    """Load a trained detector (the shipped one by default)."""
    from tunelens.safety.instruments.injection import InjectionInstrument

    return InjectionDetector(InjectionInstrument(path))


def _load_split(path: Path) -> tuple[list[str], list[int]]:
    from tunelens.safety.train_injection import read_labelled

    if not Path(path).is_file():
        raise TunelensError(f"injection data not found: {path}")
    texts, labels = read_labelled(Path(path))
    if len(set(labels)) < 2:
        raise TunelensError(f"{path}: needs both labels 0 and 1 to train/evaluate")
    return texts, labels


# Benign instruction files accepted as extra negatives, and the field each one holds the text in.
BENIGN_FIELDS = {"self_instruct_seed_tasks.jsonl": "instruction", "ifeval_input_data.jsonl": "prompt",
                 "gsm8k_train.jsonl": "question"}


def load_benign(path: Path, limit: int | None = None) -> list[str]:
    """Instructions from a known benign file (field chosen by file name; see BENIGN_FIELDS)."""
    from tunelens.safety.train_injection import _jsonl_field

    path = Path(path)
    field_name = BENIGN_FIELDS.get(path.name)
    if field_name is None:
        raise TunelensError(f"{path}: unknown benign source; expected one of {sorted(BENIGN_FIELDS)}")
    if not path.is_file():
        raise TunelensError(f"benign instruction file not found: {path}")
    out = _jsonl_field(path, field_name)
    return out[:limit] if limit else out


def _metrics(y_true: list[int], y_pred: list[int]) -> dict:
    from sklearn.metrics import f1_score, precision_score, recall_score

    return {"precision": round(float(precision_score(y_true, y_pred, zero_division=0)), 4),
            "recall": round(float(recall_score(y_true, y_pred, zero_division=0)), 4),
            "f1": round(float(f1_score(y_true, y_pred, zero_division=0)), 4)}


def train_injection(train_path: Path, test_path: Path | None = None, out_path: Path = DEFAULT_ARTIFACT,
                    threshold: float = DEFAULT_THRESHOLD, benign: list[Path] | None = None,
                    benign_limit: int = 600, fp_check: Path | None = None) -> dict:
    """Fit a detector on your labelled file (plus benign files), save it, report on ``test_path``.

    Metrics are for the classifier alone, the rules alone, and the combination the server uses;
    they are also written next to the artifact as ``<name>_metrics.json``.
    """
    import joblib

    from tunelens.safety.instruments.injection import normalise
    from tunelens.safety.train_injection import build_pipeline

    texts, labels = _load_split(Path(train_path))
    report: dict = {"train_file": Path(train_path).name, "train_rows": len(texts), "threshold": threshold,
                    "benign_extra": {}}
    for b in benign or []:
        extra = load_benign(Path(b), benign_limit)
        texts, labels = texts + extra, labels + [0] * len(extra)
        report["benign_extra"][Path(b).name] = len(extra)
    pipe = build_pipeline().fit([normalise(t) for t in texts], labels)
    from tunelens.safety.instruments.injection import InjectionInstrument

    detector = InjectionDetector(InjectionInstrument.from_pipeline(pipe, threshold))
    if test_path is not None:
        test_texts, test_labels = _load_split(Path(test_path))
        results = detector.detect(test_texts)
        report.update({
            "test_file": Path(test_path).name, "test_rows": len(test_texts),
            "classifier": _metrics(test_labels, [int(r.model_score >= threshold) for r in results]),
            "heuristics": _metrics(test_labels, [int(bool(r.heuristics)) for r in results]),
            "combined": _metrics(test_labels, [int(r.flagged) for r in results]),
        })
    if fp_check is not None:  # false positives on ordinary instructions never trained on
        rows = json.loads(Path(fp_check).read_text(encoding="utf-8"))[-1000:]
        instr = [r["instruction"] + (" " + r["input"] if r.get("input") else "") for r in rows]
        flagged = [r.flagged for r in detector.detect(instr)]
        report["benign_false_positive_rate"] = {"file": Path(fp_check).name, "rows": len(instr),
                                                "rate": round(sum(flagged) / len(instr), 4)}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump({"pipeline": pipe, "threshold": threshold, "report": report}, out_path, compress=3)
    out_path.with_name(out_path.stem + "_metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    load_detector.cache_clear()
    return report

