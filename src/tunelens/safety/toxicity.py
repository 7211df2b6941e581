"""Toxicity scoring (the old API): the toxicity instrument shipped with the package, Detoxify optionally.

``load_scorer()`` wraps :class:`tunelens.safety.instruments.toxicity.ToxicityInstrument` (trained by
``tunelens safety train-toxicity`` on tweets, chat abuse, dialogue replies and non-toxic assistant
replies; validation figures in ``instruments/cards/toxicity.json`` and ``docs/instruments/toxicity.md``).
``score`` returns P(toxic) in [0, 1]; ``threshold`` is the one chosen on validation data.

``train_toxicity`` below is the old Davidson-only trainer, kept for quick experiments; the shipped
artifact comes from :func:`tunelens.safety.train_toxicity.train`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelens.errors import TunelensError

ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
DEFAULT_ARTIFACT = ARTIFACT_DIR / "toxicity.joblib"
DEFAULT_THRESHOLD = 0.5
BACKENDS = ("builtin", "detoxify")
DAVIDSON_FILE = "davidson_hate_speech_offensive_labeled_data.csv"  # the training data, in the data folder


@dataclass
class ToxicityScorer:
    """Scores texts for toxicity. ``score`` returns P(toxic or offensive) per text."""

    backend: str
    model: Any
    threshold: float = DEFAULT_THRESHOLD
    info: dict | None = None

    def score(self, texts: list[str]) -> list[float]:
        if isinstance(texts, str):
            raise TypeError("score() takes a list of texts, not a single string")
        if not texts:
            return []
        texts = [t if isinstance(t, str) else "" for t in texts]
        if self.backend == "builtin":
            return self.model.scores(texts)
        # Detoxify: the max over its toxicity heads is the closest match to "toxic or offensive".
        out = self.model.predict(texts)
        heads = [k for k in ("toxicity", "severe_toxicity", "obscene", "insult", "identity_attack", "threat") if k in out]
        return [float(max(out[k][i] for k in heads)) for i in range(len(texts))]

    def is_toxic(self, texts: list[str]) -> list[bool]:
        return [s >= self.threshold for s in self.score(texts)]


_LOADED: dict[tuple[str, str], ToxicityScorer] = {}


def load_scorer(backend: str = "builtin", path: str | Path | None = None) -> ToxicityScorer:
    """Load a toxicity scorer: the shipped artifact (offline) by default, or ``"detoxify"``.

    Loaded scorers are kept per (backend, path, file mtime): the data filter, the serving filter
    and eval may all ask for one in the same process.
    """
    key_path = Path(path) if path else (DEFAULT_ARTIFACT if backend == "builtin" else Path("original"))
    mtime = key_path.stat().st_mtime if key_path.is_file() else 0.0
    key = (backend, f"{key_path}:{mtime}")
    if key not in _LOADED:
        _LOADED[key] = _load(backend, path)
    return _LOADED[key]


def _load(backend: str, path: str | Path | None) -> ToxicityScorer:
    if backend == "builtin":
        from tunelens.safety.instruments.toxicity import ToxicityInstrument

        inst = ToxicityInstrument(path)
        return ToxicityScorer("builtin", inst, inst.threshold, inst.info)
    if backend == "detoxify":
        try:
            from detoxify import Detoxify
        except ImportError as exc:
            raise TunelensError("the detoxify backend needs `pip install detoxify`; the builtin backend works offline") from exc
        try:
            model = Detoxify(str(path) if path else "original", device="cpu")
        except Exception as exc:  # weights are downloaded on first use: offline this fails
            raise TunelensError(f"cannot load Detoxify weights ({exc}); use the builtin backend offline") from exc
        return ToxicityScorer("detoxify", model)
    raise TunelensError(f"unknown toxicity backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def read_davidson(path: Path) -> tuple[list[str], list[int]]:
    """Tweets and binary labels (1 = hate speech or offensive, 0 = neither)."""
    from tunelens.datafiles import read_csv

    rows = read_csv(path, ("class", "tweet"))
    texts, labels = [], []
    for i, row in enumerate(rows):
        if row["class"] not in {"0", "1", "2"}:
            raise TunelensError(f"{path}: row {i + 2} has class {row['class']!r}; expected 0, 1 or 2")
        texts.append(row["tweet"])
        labels.append(0 if row["class"] == "2" else 1)
    return texts, labels


def build_pipeline(max_word_features: int = 20000, max_char_features: int = 30000):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    features = FeatureUnion([
        ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), min_df=2, max_features=max_word_features,
                                 sublinear_tf=True, lowercase=True)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=3, max_features=max_char_features,
                                 sublinear_tf=True, lowercase=True)),
    ])
    return Pipeline([("features", features), ("clf", LogisticRegression(C=4.0, class_weight="balanced", max_iter=2000))])


def train_toxicity(data_path: Path, out_path: Path, *, test_size: float = 0.2, seed: int = 0,
                   max_word_features: int = 20000, max_char_features: int = 30000) -> dict:
    """Train on Davidson with a stratified held-out split; save the artifact and a metrics JSON."""
    import joblib
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_size < 1.0:
        raise TunelensError(f"test_size must be in (0, 1), got {test_size}")
    if not Path(data_path).is_file():
        raise TunelensError(f"Davidson data not found: looked for {data_path}")
    texts, labels = read_davidson(Path(data_path))
    x_train, x_test, y_train, y_test = train_test_split(texts, labels, test_size=test_size, random_state=seed,
                                                        stratify=labels)
    start = time.perf_counter()
    pipe = build_pipeline(max_word_features, max_char_features).fit(x_train, y_train)
    train_s = time.perf_counter() - start
    probs = pipe.predict_proba(x_test)[:, 1]
    preds = (probs >= DEFAULT_THRESHOLD).astype(int)
    majority = max(set(y_train), key=y_train.count)
    metrics = {
        "data_file": Path(data_path).name,
        "label_choice": "toxic = Davidson class 0 (hate speech) or 1 (offensive language); 0 = class 2 (neither)",
        "rows": len(texts), "train_rows": len(x_train), "test_rows": len(x_test),
        "test_positive_rate": round(sum(y_test) / len(y_test), 4),
        "split": f"stratified, test_size={test_size}, seed={seed}",
        "threshold": DEFAULT_THRESHOLD,
        "f1": round(float(f1_score(y_test, preds)), 4),
        "precision": round(float(precision_score(y_test, preds)), 4),
        "recall": round(float(recall_score(y_test, preds)), 4),
        "roc_auc": round(float(roc_auc_score(y_test, probs)), 4),
        "macro_f1": round(float(f1_score(y_test, preds, average="macro")), 4),
        "majority_baseline_f1": round(float(f1_score(y_test, [majority] * len(y_test))), 4),
        "train_seconds": round(train_s, 1),
    }
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump({"pipeline": pipe, "threshold": DEFAULT_THRESHOLD, "info": metrics}, out_path, compress=3)
    out_path.with_name(out_path.stem + "_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n",
                                                                    encoding="utf-8")
    return metrics
