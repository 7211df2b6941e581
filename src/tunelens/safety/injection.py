"""Prompt-injection detector: a small TF-IDF + logistic-regression classifier plus heuristics.

The classifier is trained by ``tunelens safety train-injection`` on the deepset
prompt-injections data (English and German) and shipped as a small joblib artifact inside the
package. The heuristics catch the classic phrasings ("ignore previous instructions", "vergiss
alles", "olvida todas las instrucciones", ...) in a few languages even where the classifier is
unsure; a heuristic hit forces the score to at least ``HEURISTIC_SCORE``.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from tunelens.errors import TunelensError

ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
DEFAULT_ARTIFACT = ARTIFACT_DIR / "injection.joblib"
DEFAULT_METRICS = ARTIFACT_DIR / "injection_metrics.json"
DEFAULT_THRESHOLD = 0.5
HEURISTIC_SCORE = 0.95

# (name, pattern). Case-insensitive; kept tight so benign questions do not trip them.
HEURISTICS: list[tuple[str, str]] = [
    ("ignore_instructions_en", r"\b(ignore|disregard|forget|drop|skip|override)\b[^.!?\n]{0,40}\b"
     r"(previous|prior|above|preceding|earlier|all|your|the)\b[^.!?\n]{0,30}\b"
     r"(instructions?|prompts?|rules|orders|tasks|assignments|context|directions|everything)\b"),
    ("forget_everything_en", r"\bforget (about )?(everything|all)\b"),
    ("new_task_en", r"\bnow (focus|concentrate) on (your|the) new task\b"),
    ("reveal_prompt_en", r"\b(show|print|reveal|output|repeat)\b[^.!?\n]{0,30}\b(system|initial|full|your)? ?prompt( text)?s?\b"),
    ("roleplay_override_en", r"\b(you are now|from now on you are|pretend (that )?you are|act as (an? )?(evil|unfiltered|jailbroken))\b"),
    ("dan_jailbreak", r"\b(DAN|do anything now|developer mode|jailbreak)\b"),
    ("ignore_instructions_de", r"\b(ignorier\w*|vergiss|vergessen sie|missachte\w*)\b[^.!?\n]{0,40}\b"
     r"(alle[sn]?|vorherige\w*|bisherige\w*|obige\w*|vorangehende\w*|anweisungen|aufgaben|aufträge|befehle)\b"),
    ("forget_everything_de", r"\bvergiss (jetzt |nun )?(alles|alle)\b"),
    ("ignore_instructions_es", r"\b(olvid[ae]|ignora)\w*\b[^.!?\n]{0,30}\b(todo|todas|instrucciones|anteriores)\b"),
    ("ignore_instructions_fr", r"\b(ignore[rz]?|oublie[rz]?)\b[^.!?\n]{0,30}\b(toutes les instructions|instructions précédentes|tout ce qui précède)"),
]
_COMPILED = [(name, re.compile(pat, re.IGNORECASE)) for name, pat in HEURISTICS]


@dataclass
class InjectionResult:
    score: float
    model_score: float
    heuristics: list[str] = field(default_factory=list)
    flagged: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def heuristic_hits(text: str) -> list[str]:
    """Names of the heuristics that match ``text``."""
    return [name for name, rx in _COMPILED if rx.search(text)]


def build_pipeline():
    """Char n-grams catch spelling variants and German compounds; word n-grams catch phrasings."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    features = FeatureUnion([
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, max_features=20000,
                                 sublinear_tf=True, lowercase=True)),
        ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), min_df=1, max_features=10000,
                                 sublinear_tf=True, lowercase=True)),
    ])
    clf = LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000)
    return Pipeline([("features", features), ("clf", clf)])


def _load_split(path: Path) -> tuple[list[str], list[int]]:
    from tunelens.records import iter_jsonl_numbered

    if not path.is_file():
        raise TunelensError(f"injection data not found: {path}")
    texts, labels = [], []
    try:
        for i, row in iter_jsonl_numbered(path):
            if not isinstance(row.get("text"), str) or row.get("label") not in (0, 1):
                raise TunelensError(f"{path}:{i}: expected {{'text': str, 'label': 0|1}}, got keys {sorted(row)}")
            texts.append(row["text"])
            labels.append(int(row["label"]))
    except ValueError as exc:
        raise TunelensError(str(exc)) from None
    if len(set(labels)) < 2:
        raise TunelensError(f"{path}: needs both labels 0 and 1 to train/evaluate")
    return texts, labels


# Benign instruction sources added as negatives: deepset's benign rows are almost all questions,
# so a classifier trained on them alone flags plain imperatives ("Write a poem") as injections.
# Only permissively licensed files are used (the artifact ships in the package).
BENIGN_FIELDS = {"self_instruct_seed_tasks.jsonl": "instruction", "ifeval_input_data.jsonl": "prompt",
                 "gsm8k_train.jsonl": "question"}


def load_benign(path: Path, limit: int | None = None) -> list[str]:
    """Instructions from a known benign file (field chosen by file name; see BENIGN_FIELDS)."""
    from tunelens.records import iter_jsonl_numbered

    path = Path(path)
    field_name = BENIGN_FIELDS.get(path.name)
    if field_name is None:
        raise TunelensError(f"{path}: unknown benign source; expected one of {sorted(BENIGN_FIELDS)}")
    if not path.is_file():
        raise TunelensError(f"benign instruction file not found: {path}")
    out = []
    try:
        for i, row in iter_jsonl_numbered(path):
            text = row.get(field_name)
            if not isinstance(text, str):
                raise TunelensError(f"{path}:{i}: missing string field {field_name!r}")
            out.append(text)
            if limit and len(out) >= limit:
                break
    except ValueError as exc:
        raise TunelensError(str(exc)) from None
    return out


def _metrics(y_true: list[int], y_pred: list[int]) -> dict:
    from sklearn.metrics import f1_score, precision_score, recall_score

    return {
        "precision": round(float(precision_score(y_true, y_pred, zero_division=0)), 4),
        "recall": round(float(recall_score(y_true, y_pred, zero_division=0)), 4),
        "f1": round(float(f1_score(y_true, y_pred, zero_division=0)), 4),
    }


def train_injection(train_path: Path, test_path: Path | None = None, out_path: Path = DEFAULT_ARTIFACT,
                    threshold: float = DEFAULT_THRESHOLD, benign: list[Path] | None = None,
                    benign_limit: int = 600, fp_check: Path | None = None) -> dict:
    """Fit the classifier, save it with joblib, and return precision/recall on the test split.

    Metrics are reported for the classifier alone, the heuristics alone, and the combination the
    server uses; they are also written next to the artifact as ``<name>_metrics.json``.
    """
    import joblib

    texts, labels = _load_split(Path(train_path))
    report: dict = {"train_file": Path(train_path).name, "train_rows": len(texts), "threshold": threshold,
                    "benign_extra": {}}
    for b in benign or []:
        extra = load_benign(Path(b), benign_limit)
        texts, labels = texts + extra, labels + [0] * len(extra)
        report["benign_extra"][Path(b).name] = len(extra)
    pipe = build_pipeline()
    pipe.fit(texts, labels)
    if test_path is not None:
        test_texts, test_labels = _load_split(Path(test_path))
        probs = pipe.predict_proba(test_texts)[:, 1]
        model_pred = [int(p >= threshold) for p in probs]
        heur_pred = [int(bool(heuristic_hits(t))) for t in test_texts]
        combined = [int(max(p, HEURISTIC_SCORE if h else 0.0) >= threshold) for p, h in zip(probs, heur_pred)]
        report.update({
            "test_file": Path(test_path).name, "test_rows": len(test_texts),
            "classifier": _metrics(test_labels, model_pred),
            "heuristics": _metrics(test_labels, heur_pred),
            "combined": _metrics(test_labels, combined),
        })
    if fp_check is not None:
        # False-positive rate on ordinary instructions the classifier never saw (evaluation only).
        import json as _json

        rows = _json.loads(Path(fp_check).read_text(encoding="utf-8"))[-1000:]
        instr = [r["instruction"] + (" " + r["input"] if r.get("input") else "") for r in rows]
        probs = pipe.predict_proba(instr)[:, 1]
        flagged = [max(p, HEURISTIC_SCORE if heuristic_hits(t) else 0.0) >= threshold for p, t in zip(probs, instr)]
        report["benign_false_positive_rate"] = {"file": Path(fp_check).name, "rows": len(instr),
                                                "rate": round(sum(flagged) / len(instr), 4)}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump({"pipeline": pipe, "threshold": threshold, "report": report}, out_path, compress=3)
    out_path.with_name(out_path.stem + "_metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    load_detector.cache_clear()
    return report


class InjectionDetector:
    """Scores texts for prompt injection (classifier probability, raised by heuristic hits)."""

    def __init__(self, pipeline, threshold: float = DEFAULT_THRESHOLD):
        self.pipeline = pipeline
        self.threshold = threshold

    def detect(self, texts: list[str], threshold: float | None = None) -> list[InjectionResult]:
        if not texts:
            return []
        thr = self.threshold if threshold is None else threshold
        probs = self.pipeline.predict_proba(texts)[:, 1]
        out = []
        for text, p in zip(texts, probs):
            hits = heuristic_hits(text)
            score = max(float(p), HEURISTIC_SCORE if hits else 0.0)
            out.append(InjectionResult(score=round(score, 4), model_score=round(float(p), 4),
                                       heuristics=hits, flagged=score >= thr))
        return out


@lru_cache(maxsize=4)
def load_detector(path: str | Path = DEFAULT_ARTIFACT) -> InjectionDetector:
    """Load a trained detector (the shipped one by default)."""
    import joblib

    path = Path(path)
    if not path.is_file():
        raise TunelensError(f"injection classifier not found at {path}; run `tunelens safety train-injection`")
    try:
        blob = joblib.load(path)
        return InjectionDetector(blob["pipeline"], float(blob.get("threshold", DEFAULT_THRESHOLD)))
    except Exception as exc:  # unpickling across sklearn versions can fail in many ways
        raise TunelensError(f"could not load injection classifier {path} ({exc}); retrain it with "
                            "`tunelens safety train-injection`") from None
