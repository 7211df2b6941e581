"""Drift of live prompts against the training data.

Features per prompt: log length in characters, a language guess (stop-word and script
based: cheap and deterministic), and a topic embedding (hashed word n-grams -> TF-IDF ->
TruncatedSVD fitted on the training prompts, L2-normalised). Scalar features are compared with the
population stability index (PSI, reference-quantile bins); the embeddings with an RBF-kernel MMD
(median-heuristic bandwidth) and a permutation p-value. Drift = any PSI above its threshold or
the MMD p-value below alpha.
"""

from __future__ import annotations

import base64
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tunelens.errors import TunelensError

_STOPWORDS = {
    "en": "the and is are of to in what how you for with this that be it on can do".split(),
    "de": "der die das und ist sind nicht ich du wie was mit ein eine zu auf für den dem".split(),
    "fr": "le la les et est sont une un des du que qui pour dans avec pas vous je".split(),
    "es": "el la los las y es son una un del que por para con no como qué en se".split(),
    "it": "il lo la gli le e è sono una un del che per con non come di".split(),
    "nl": "de het een en is zijn van dat niet met voor op ik je".split(),
    "pt": "o a os as e é são um uma do da que para com não como em".split(),
}
_SCRIPTS = [("zh/ja", r"[\u3040-\u30ff\u4e00-\u9fff]"), ("ko", r"[\uac00-\ud7af]"), ("ru", r"[\u0400-\u04ff]"),
            ("ar", r"[\u0600-\u06ff]"), ("hi", r"[\u0900-\u097f]"), ("el", r"[\u0370-\u03ff]")]
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
SCALAR_FEATURES = ("log_chars",)


def guess_language(text: str) -> str:
    for name, rx in _SCRIPTS:
        if len(re.findall(rx, text)) >= max(2, len(text) // 10):
            return name
    words = [w.lower() for w in _WORD.findall(text)]
    if not words:
        return "none"
    scores = {lang: sum(w in sw for w in words) for lang, sw in _STOPWORD_SETS.items()}
    best = max(scores, key=scores.get)
    return best if scores[best] > 0 else "other"


_STOPWORD_SETS = {k: set(v) for k, v in _STOPWORDS.items()}


def prompt_of(record: dict[str, Any]) -> str | None:
    """The user's first prompt in a canonical record (conversation or preference)."""
    messages = record.get("prompt") if record.get("kind") == "preference" else record.get("messages")
    for m in messages or []:
        if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str):
            return m["content"]
    return None


def psi(reference: np.ndarray, live: np.ndarray, bins: int | None = None) -> float:
    """Population stability index of a scalar feature, bins at reference quantiles.

    Small live samples get fewer bins (n/10, 4..10) and half-count smoothing, so one empty bin
    in 60 prompts does not read as drift.
    """
    bins = bins or int(np.clip(len(live) // 10, 4, 10))
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        edges = np.array([reference.min() - 0.5, reference.max() + 0.5])
    edges[0], edges[-1] = -np.inf, np.inf
    ref = _smoothed(np.histogram(reference, edges)[0])
    cur = _smoothed(np.histogram(live, edges)[0])
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _smoothed(counts: np.ndarray) -> np.ndarray:
    counts = counts.astype(float) + 0.5
    return counts / counts.sum()


def psi_categorical(reference: list[str], live: list[str]) -> float:
    cats = sorted(set(reference) | set(live))
    ref = _smoothed(np.array([reference.count(c) for c in cats]))
    cur = _smoothed(np.array([live.count(c) for c in cats]))
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)


def mmd_test(x: np.ndarray, y: np.ndarray, permutations: int = 200, seed: int = 0) -> tuple[float, float, float]:
    """Unbiased MMD^2 with an RBF kernel (median-heuristic bandwidth) and its permutation p-value."""
    pooled = np.vstack([x, y])
    d2 = _sqdist(pooled, pooled)
    off = d2[np.triu_indices(len(pooled), 1)]
    median = float(np.median(off[off > 0])) if np.any(off > 0) else 1.0
    k = np.exp(-d2 / median)
    n, m = len(x), len(y)
    rng = np.random.default_rng(seed)
    # Row 0 is the observed split, the rest are permutations; all statistics in one matmul.
    sel = np.zeros((permutations + 1, n + m))
    sel[0, :n] = 1.0
    for i in range(1, permutations + 1):
        sel[i, rng.permutation(n + m)[:n]] = 1.0
    other = 1.0 - sel
    ks, ko = sel @ k, other @ k
    diag = float(np.trace(k)) / (n + m)  # 1 for an RBF kernel
    kxx = ((ks * sel).sum(1) - n * diag) / (n * (n - 1))
    kyy = ((ko * other).sum(1) - m * diag) / (m * (m - 1))
    kxy = (ks * other).sum(1) / (n * m)
    stats = kxx + kyy - 2 * kxy
    observed = float(stats[0])
    exceed = int(np.sum(stats[1:] >= observed))
    return observed, (exceed + 1) / (permutations + 1), median


@dataclass
class Features:
    log_chars: np.ndarray
    words: np.ndarray
    language: list[str]
    embedding: np.ndarray


class DriftMonitor:
    def __init__(self, reference_prompts: list[str], n_components: int = 32, max_reference: int = 400, seed: int = 0):
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
        from sklearn.pipeline import make_pipeline

        if len(reference_prompts) < 20:
            raise TunelensError(f"drift reference needs at least 20 training prompts, got {len(reference_prompts)}")
        rng = np.random.default_rng(seed)
        fit_on = reference_prompts
        if len(fit_on) > 20000:
            fit_on = [fit_on[i] for i in rng.choice(len(fit_on), 20000, replace=False)]
        n_components = min(n_components, len(fit_on) - 1)
        self.embedder = make_pipeline(
            HashingVectorizer(n_features=2**14, ngram_range=(1, 2), alternate_sign=False, norm=None),
            TfidfTransformer(sublinear_tf=True),
            TruncatedSVD(n_components=n_components, random_state=seed),
        )
        self.embedder.fit(fit_on)
        sample = reference_prompts
        if len(sample) > max_reference:
            sample = [sample[i] for i in rng.choice(len(sample), max_reference, replace=False)]
        self.n_reference_total = len(reference_prompts)
        self.reference = self.features(sample)
        self.seed = seed

    @classmethod
    def from_records(cls, paths: list[str | Path]) -> "DriftMonitor":
        from tunelens.records import iter_jsonl

        prompts: list[str] = []
        for p in paths:
            p = Path(p)
            if not p.is_file():
                raise TunelensError(f"drift reference file not found: {p}")
            try:
                prompts.extend(t for t in (prompt_of(r) for r in iter_jsonl(p)) if t)
            except ValueError as exc:
                raise TunelensError(str(exc)) from None
        return cls(prompts)

    def features(self, prompts: list[str]) -> Features:
        emb = self.embedder.transform(prompts)
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-9)
        return Features(
            log_chars=np.array([math.log1p(len(p)) for p in prompts]),
            words=np.array([len(p.split()) for p in prompts], dtype=float),
            language=[guess_language(p) for p in prompts],
            embedding=emb,
        )

    def report(self, prompts: list[str], cfg) -> dict[str, Any]:
        """Drift verdict for live prompts; ``cfg`` is a `DriftConfig`."""
        out: dict[str, Any] = {
            "n_live": len(prompts), "n_reference": self.n_reference_total, "n_reference_sampled": len(self.reference.words),
            "thresholds": {"psi": cfg.psi_threshold, "mmd_alpha": cfg.mmd_alpha, "min_samples": cfg.min_samples},
        }
        if len(prompts) < cfg.min_samples:
            out.update(drifted=None, reason=f"only {len(prompts)} live prompts; need {cfg.min_samples} for a verdict")
            return out
        live = self.features(prompts)
        ref = self.reference
        # Word count is reported but not tested: it is nearly collinear with length and, being
        # discrete, noisier on small windows (one more test = more false alarms).
        scores = {"log_chars": psi(ref.log_chars, live.log_chars),
                  "language": psi_categorical(ref.language, live.language)}
        mmd2, p_value, bandwidth = mmd_test(ref.embedding, live.embedding[:400], seed=self.seed)
        reasons = [f"PSI({k})={v:.3f} > {cfg.psi_threshold}" for k, v in scores.items() if v > cfg.psi_threshold]
        if p_value < cfg.mmd_alpha:
            reasons.append(f"embedding MMD^2={mmd2:.4f}, p={p_value:.4f} < {cfg.mmd_alpha}")
        langs = sorted(set(ref.language) | set(live.language))
        out.update(
            psi={k: round(v, 4) for k, v in scores.items()},
            mmd={"mmd2": round(mmd2, 5), "p_value": round(p_value, 4), "bandwidth_sq": round(bandwidth, 4)},
            language_share={"reference": {c: round(ref.language.count(c) / len(ref.language), 3) for c in langs},
                            "live": {c: round(live.language.count(c) / len(live.language), 3) for c in langs}},
            drifted=bool(reasons), reasons=reasons,
        )
        return out

    def html_report(self, prompts: list[str], cfg, title: str = "tunelens drift report") -> tuple[str, dict[str, Any]]:
        """(HTML page with plots, the report dict it shows)."""
        import html

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rep = self.report(prompts, cfg)
        figs = []
        if prompts:
            live = self.features(prompts)
            fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
            for ax, name in zip(axes[:2], ("log_chars", "words")):
                r, l_ = getattr(self.reference, name), getattr(live, name)
                bins = np.histogram_bin_edges(np.concatenate([r, l_]), 20)
                ax.hist(r, bins, alpha=0.6, density=True, label="training")
                ax.hist(l_, bins, alpha=0.6, density=True, label="live")
                psi_value = rep.get("psi", {}).get(name)
                ax.set_title(name + (f" (PSI {psi_value:.3f})" if psi_value is not None else ""))
                ax.legend()
            shares = rep.get("language_share") or {}
            langs = list((shares.get("reference") or {}).keys())
            if langs:
                xs = np.arange(len(langs))
                axes[2].bar(xs - 0.2, [shares["reference"][c] for c in langs], 0.4, label="training")
                axes[2].bar(xs + 0.2, [shares["live"][c] for c in langs], 0.4, label="live")
                axes[2].set_xticks(xs, langs)
                axes[2].set_title("language share")
                axes[2].legend()
            figs.append(_png(fig, plt))
            from sklearn.decomposition import PCA

            both = np.vstack([self.reference.embedding, live.embedding])
            xy = PCA(n_components=2, random_state=0).fit_transform(both)
            n = len(self.reference.embedding)
            fig, ax = plt.subplots(figsize=(5, 4))
            ax.scatter(xy[:n, 0], xy[:n, 1], s=6, alpha=0.5, label="training")
            ax.scatter(xy[n:, 0], xy[n:, 1], s=6, alpha=0.5, label="live")
            ax.set_title("topic embedding (PCA of SVD space)")
            ax.legend()
            figs.append(_png(fig, plt))
        verdict = {True: "DRIFT", False: "no drift", None: "not enough data"}[rep["drifted"]]
        rows = "".join(f"<li>{html.escape(r)}</li>" for r in rep.get("reasons", []))
        imgs = "".join(f'<img alt="drift plot" src="data:image/png;base64,{b}">' for b in figs)
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                "<style>body{font-family:sans-serif;margin:2em}img{max-width:100%;display:block;margin:1em 0}"
                "pre{background:#f4f4f4;padding:1em}</style></head><body>"
                f"<h1>{html.escape(title)}</h1><h2>Verdict: {verdict}</h2><ul>{rows}</ul>{imgs}"
                f"<h3>Figures</h3><pre>{html.escape(_json(rep))}</pre></body></html>"), rep


def _png(fig, plt) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _json(obj) -> str:
    import json

    return json.dumps(obj, indent=2, ensure_ascii=False)


def live_prompts(store, window: int) -> list[str]:
    """The last user message of the most recent ``window`` exchanges (already PII-redacted)."""
    from sqlalchemy import select

    from tunelens.serve.db import Exchange

    with store.session() as s:
        rows = s.scalars(select(Exchange.request).order_by(Exchange.created_at.desc()).limit(window)).all()
    out = []
    for req in rows:
        users = [m["content"] for m in (req or {}).get("messages", []) if m.get("role") == "user"]
        if users:
            out.append(users[-1])
    return out
