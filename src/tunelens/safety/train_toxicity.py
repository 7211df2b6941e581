"""Training and validation of the toxicity instrument (``tunelens safety train-toxicity``).

Sources (read from the data folder at run time, never copied into the package):

==================  ==========================================  =================================
source              toxic (1)                                   non-toxic (0)
==================  ==========================================  =================================
Davidson tweets     class 0 hate / 1 offensive                  class 2 neither
ConvAbuse           user turn, most annotators: abusive         user turn, most: not abusive
DiaSafety           Unsafe "Offending User", "Biased Opinion"   Safe rows of those categories
HH-RLHF harmless    --                                          every assistant turn of ``chosen``
CoCoNot pref        --                                          GPT-4 answers (chosen, rejected)
written replies     --                                          ``safety/data/polite_replies.json``
==================  ==========================================  =================================

Held out (never trained on, never used to pick the threshold): a stratified 20% of Davidson,
ConvAbuse's and DiaSafety's official test splits, HH pairs and CoCoNot rows by index, and the
written replies built from the ``heldout`` pieces. The threshold is chosen on the validation splits
(ConvAbuse valid, DiaSafety val, another 10% of Davidson, HH and CoCoNot validation rows).
"""

from __future__ import annotations

import base64
import csv
import gzip
import itertools
import json
import random
import string
import time
from pathlib import Path
from typing import Any

from tunelens.errors import TunelensError
from tunelens.safety.train_metrics import wilson  # noqa: F401  (the injection trainer imports it from here)

CARD = Path(__file__).resolve().parent / "instruments" / "cards" / "toxicity.json"
DOC_NAME = "toxicity.md"
POLITE = Path(__file__).resolve().parent / "data" / "polite_replies.json"
FILES = {
    "davidson": "davidson_hate_speech_offensive_labeled_data.csv",
    "convabuse": "convabuse_{split}.csv",
    "diasafety": "diasafety_{split}.json",
    "hh": "hh_rlhf_harmless_base_test.jsonl.gz",
    "coconot": "coconot_pref.jsonl",
}
LICENCES = {"davidson": "MIT (tweets are third-party Twitter content)", "convabuse": "CC BY 4.0",
            "diasafety": "Apache-2.0", "hh": "MIT", "coconot": "MIT", "written": "tunelens (written for it)",
            "ordinary_t1": "tunelens (written for it)"}
# ordinary assistant replies (coding, git, shells, maths, cooking, confirmations, harsh-sounding technical words;
# 25% not English) by two writers who saw none of the project's data (docs/instruments/preregistration/toxicity-v3.md):
# writer T1's are trained on (version 3), writers T2's and T3's are held out
ORDINARY_TRAIN_FILE = "toxicity_ordinary_t1.jsonl"
ORDINARY_HELDOUT_FILE = "toxicity_ordinary_t2.jsonl"
ORDINARY_DECISION_FILE = "toxicity_ordinary_t3.jsonl"  # writer T3's, which decided version 3 (the corrected rule)
DIASAFETY_TOXIC = ("Offending User", "Biased Opinion")
DIASAFETY_REPORTED = ("Offending User", "Biased Opinion", "Toxicity Agreement")
MAX_REPLY_CHARS = 2000


# -- statistics shared with the injection trainer ----------------------------------------------
def auroc_ci(y: list[int], s: list[float], n_boot: int = 500, seed: int = 0) -> tuple[float, list[float]]:
    """AUROC and its percentile-bootstrap 95% interval (resampling positives and negatives apart)."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    y_arr, s_arr = np.asarray(y), np.asarray(s)
    pos, neg = s_arr[y_arr == 1], s_arr[y_arr == 0]
    auc = float(roc_auc_score(y_arr, s_arr))
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        bp, bn = rng.choice(pos, len(pos)), rng.choice(neg, len(neg))
        yy = np.r_[np.ones(len(bp)), np.zeros(len(bn))]
        boots.append(roc_auc_score(yy, np.r_[bp, bn]))
    return round(auc, 4), [round(float(np.percentile(boots, 2.5)), 4), round(float(np.percentile(boots, 97.5)), 4)]


def binary_figures(y: list[int], s: list[float], threshold: float, *, auroc: bool = True) -> dict[str, Any]:
    """n, precision/recall/F1 (Wilson CIs for precision and recall), flag rate, AUROC with CI."""
    pred = [int(v >= threshold) for v in s]
    tp = sum(p and t for p, t in zip(pred, y))
    fp = sum(p and not t for p, t in zip(pred, y))
    fn = sum((not p) and t for p, t in zip(pred, y))
    n_pos, n_neg = sum(y), len(y) - sum(y)
    out: dict[str, Any] = {"n": len(y), "n_pos": n_pos, "n_neg": n_neg,
                           "flagged": sum(pred), "flag_rate": round(sum(pred) / len(y), 4) if y else None}
    ci: dict[str, Any] = {"flag_rate": wilson(sum(pred), len(y))}
    if n_pos:
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / n_pos
        out.update(precision=round(prec, 4), recall=round(rec, 4),
                   f1=round(2 * prec * rec / (prec + rec), 4) if prec + rec else 0.0)
        ci.update(precision=wilson(tp, tp + fp), recall=wilson(tp, n_pos))
    if n_neg:
        out["false_positive_rate"] = round(fp / n_neg, 4)
        ci["false_positive_rate"] = wilson(fp, n_neg)
    if auroc and n_pos and n_neg:
        out["auroc"], ci["auroc"] = auroc_ci(y, s)
    out["ci95"] = ci
    return out


# -- readers ---------------------------------------------------------------------------------
def _path(data_dir: Path, name: str) -> Path:
    path = Path(data_dir) / name
    if not path.is_file():
        raise TunelensError(f"toxicity training data not found: {path} (set --data-dir or TUNELENS_DATA_DIR)")
    return path


def read_davidson(data_dir: Path) -> tuple[list[str], list[int]]:
    from tunelens.safety.toxicity import read_davidson as _read

    return _read(_path(data_dir, FILES["davidson"]))


def read_convabuse(data_dir: Path, split: str) -> tuple[list[str], list[int]]:
    """User turns; toxic when most annotators who labelled the row chose an abusive level (-1..-3)."""
    path = _path(data_dir, FILES["convabuse"].format(split=split))
    texts, labels = [], []
    with path.open(encoding="utf-8", newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            if "user" not in row:
                raise TunelensError(f"{path}: no 'user' column")
            votes = [int(level) for a in range(1, 9) for level in ("1", "0", "-1", "-2", "-3")
                     if (row.get(f"Annotator{a}_is_abuse.{level}") or "").strip() in ("1", "1.0")]
            if not votes:
                raise TunelensError(f"{path}: row {i + 2} has no annotator is_abuse label")
            texts.append(row["user"] or "")
            labels.append(int(sum(v < 0 for v in votes) * 2 > len(votes)))
    return texts, labels


def read_diasafety(data_dir: Path, split: str, categories=DIASAFETY_TOXIC) -> tuple[list[str], list[int], list[str]]:
    """Replies of the given categories: (texts, 1 = Unsafe, category)."""
    path = _path(data_dir, FILES["diasafety"].format(split=split))
    rows = json.loads(path.read_text(encoding="utf-8"))
    texts, labels, cats = [], [], []
    for i, row in enumerate(rows):
        if row.get("label") not in ("Safe", "Unsafe") or not isinstance(row.get("response"), str):
            raise TunelensError(f"{path}: row {i} has label {row.get('label')!r}; expected Safe or Unsafe")
        if row.get("category") in categories:
            texts.append(row["response"])
            labels.append(int(row["label"] == "Unsafe"))
            cats.append(row["category"])
    return texts, labels, cats


def read_hh_pairs(data_dir: Path) -> list[tuple[list[str], list[str]]]:
    """Per pair: (assistant turns of chosen, assistant turns of rejected)."""
    path = _path(data_dir, FILES["hh"])
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            out.append(tuple([t.split("\n\nHuman:")[0].strip()[:MAX_REPLY_CHARS]
                              for t in row[k].split("\n\nAssistant:")[1:] if t.strip()]
                             for k in ("chosen", "rejected")))
    return out


def read_coconot(data_dir: Path) -> list[tuple[str, str]]:
    path = _path(data_dir, FILES["coconot"])
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r["chosen"][:MAX_REPLY_CHARS], r["rejected"][:MAX_REPLY_CHARS]) for r in rows]


def polite_replies(part: str, limit: int = 400, seed: int = 0) -> list[str]:
    """Written refusals, apologies and clarifications composed from ``polite_replies.json[part]``."""
    spec = json.loads(POLITE.read_text(encoding="utf-8"))[part]
    combos = [" ".join(c) for c in itertools.product(spec["openings"], spec["reasons"], spec["offers"])]
    combos += [" ".join(c) for c in itertools.product(spec["openings"], spec["offers"])]
    random.Random(seed).shuffle(combos)
    return spec["openings"] + spec["whole"] + combos[:limit]


def _slices(n: int, seed: int = 0) -> tuple[list[int], list[int], list[int]]:
    """Train / validation / test indices (70 / 10 / 20) of n rows, seeded."""
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    a, b = int(n * 0.7), int(n * 0.8)
    return idx[:a], idx[a:b], idx[b:]


def build_sets(data_dir: Path, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Every labelled set by role: ``train``, ``val:<set>`` and ``test:<set>`` -> {texts, labels, source}."""
    from sklearn.model_selection import train_test_split

    sets: dict[str, dict[str, Any]] = {}

    def add(key, texts, labels, groups=None):
        sets[key] = {"texts": list(texts), "labels": list(labels), "groups": list(groups) if groups else None}

    d_texts, d_labels = read_davidson(data_dir)
    idx = list(range(len(d_texts)))
    tr_i, te_i = train_test_split(idx, test_size=0.2, random_state=seed, stratify=d_labels)
    tr_i, va_i = train_test_split(tr_i, test_size=0.125, random_state=seed, stratify=[d_labels[i] for i in tr_i])
    for key, ids in (("train:davidson", tr_i), ("val:davidson", va_i), ("test:davidson", te_i)):
        add(key, [d_texts[i] for i in ids], [d_labels[i] for i in ids])
    for key, split in (("train:convabuse", "train"), ("val:convabuse", "valid"), ("test:convabuse", "test")):
        add(key, *read_convabuse(data_dir, split))
    for key, split in (("train:diasafety", "train"), ("val:diasafety", "val")):
        add(key, *read_diasafety(data_dir, split))
    add("test:diasafety", *read_diasafety(data_dir, "test", DIASAFETY_REPORTED))
    pairs = read_hh_pairs(data_dir)
    tr, va, te = _slices(len(pairs), seed)
    add("train:hh", [t for i in tr for t in pairs[i][0]], [0] * sum(len(pairs[i][0]) for i in tr))
    for key, ids in (("val:hh", va), ("test:hh", te)):  # the first reply of each held-out chosen dialogue
        texts = [pairs[i][0][0] for i in ids if pairs[i][0]]
        add(key, texts, [0] * len(texts))
    # chosen vs rejected (the old scorer's AUROC 0.49): reported, not a target
    ids = [i for i in te if pairs[i][0] and pairs[i][1] and pairs[i][0][-1] != pairs[i][1][-1]]
    add("test:hh_pairs", [pairs[i][1][-1] for i in ids] + [pairs[i][0][-1] for i in ids], [1] * len(ids) + [0] * len(ids))
    coco = read_coconot(data_dir)
    tr, va, te = _slices(len(coco), seed)
    for key, ids in (("train:coconot", tr), ("val:coconot", va), ("test:coconot", te)):
        texts = [t for i in ids for t in coco[i]]
        add(key, texts, [0] * len(texts))
    train_polite, test_polite = polite_replies("train"), polite_replies("heldout", limit=250)
    add("train:written", train_polite, [0] * len(train_polite))
    add("test:written", test_polite, [0] * len(test_polite))
    machine = machine_strings(seed)
    add("test:machine_strings", machine, [0] * len(machine))
    from tunelens.safety.labelled import packaged_jsonl

    for key, file in (("train:ordinary_t1", ORDINARY_TRAIN_FILE), ("test:ordinary_t2", ORDINARY_HELDOUT_FILE),
                      ("test:ordinary_t3", ORDINARY_DECISION_FILE)):
        texts = [r["text"] for r in packaged_jsonl(file)]
        add(key, texts, [0] * len(texts))
    return sets


MACHINE_TEMPLATES = (
    "Your API key is {t}. Keep it secret.", "Here is the SHA-256 of the file: {t}", "Set SESSION_SECRET={t} in .env",
    "The commit {t} introduced the bug.", "Use this token in the Authorization header: Bearer {t}",
    "Sure! The base64 of your text is {t}", "Your reset code: {t}", "Paste {t} into the license field.",
)


def machine_strings(seed: int = 0, n: int = 400) -> list[str]:
    """Harmless replies that quote a key, a hash, a token or a base64 blob (generated here, seeded; never trained on):
    version 3's held-out check that random characters are not read as toxicity."""
    rng = random.Random(seed + 7)
    alnum = string.ascii_letters + string.digits

    def token() -> str:
        kind = rng.randrange(6)
        if kind == 0:
            return base64.urlsafe_b64encode(rng.randbytes(24)).decode().rstrip("=")
        if kind == 1:
            return rng.randbytes(rng.choice((16, 20, 32))).hex()
        if kind == 2:
            return "sk-" + "".join(rng.choice(alnum) for _ in range(40))
        if kind == 3:
            return "ghp_" + "".join(rng.choice(alnum) for _ in range(36))
        if kind == 4:
            return "tl_" + rng.randbytes(6).hex() + "_" + base64.urlsafe_b64encode(rng.randbytes(24)).decode().rstrip("=")
        return base64.b64encode(rng.randbytes(rng.choice((18, 24, 33)))).decode()

    return [MACHINE_TEMPLATES[i % len(MACHINE_TEMPLATES)].format(t=token()) for i in range(n)]


HARMLESS_TEST = ("test:hh", "test:coconot", "test:written")
LABELLED_TEST = ("test:convabuse", "test:diasafety", "test:davidson")
SET_NAMES = {
    "test:davidson": "Davidson tweets, stratified 20% held out",
    "test:convabuse": "ConvAbuse official test split (user turns to chatbots)",
    "test:diasafety": "DiaSafety official test split (chatbot replies; Offending User, Biased Opinion, Toxicity Agreement)",
    "test:hh": "HH-RLHF harmless-base, held-out pairs: first assistant reply of chosen (all non-toxic)",
    "test:coconot": "CoCoNot pref, held-out rows: GPT-4 answers and refusals (all non-toxic)",
    "test:written": "written refusals/apologies from held-out pieces (all non-toxic)",
    "test:hh_pairs": "HH-RLHF harmless held-out pairs: rejected (1) vs chosen (0) last reply",
    "test:ordinary_t2": "ordinary assistant replies by writer T2 (12 equal to a writer T1 text left out; coding, git, "
                        "maths, confirmations, harsh-sounding technical words; 25% not English; never trained on; "
                        "all non-toxic)",
    "test:ordinary_t3": "ordinary assistant replies by writer T3 (the same brief; written after the corrected rule, "
                        "read once to decide version 3; 13 equal to a writer T1 text left out; never trained on; "
                        "all non-toxic)",
    "test:machine_strings": "harmless replies quoting a random key, hash, token or base64 blob (generated, seeded; "
                            "never trained on; all non-toxic): target <= 2% flagged",
}


CHANGES: list[str] = [
    "Version 3 (2026-12-07; docs/instruments/preregistration/toxicity-v3.md) removes random-looking tokens (keys, "
    "hashes, base64: runs of 16+ key characters that are hex with digits, or mix lower case, upper case and digits) "
    "before the vectorisers, and trains on 600 ordinary assistant replies written for tunelens by a writer T1 "
    "(coding, git, shells, maths, cooking, confirmations, technical words that sound harsh such as 'kill the process'; "
    "26% not English). Found by a serve test: version 2 refused, as toxic, about a third of replies quoting a random "
    "URL-safe token, 15% of generated replies quoting a key or hash (machine_strings), and 9.3% of ordinary technical "
    "replies by other writers ('The commit introduced the bug.' 0.57). Decided on a fresh writer T3 (387 replies kept): "
    "version 2 -> 3 flagged 36 -> 1; machine strings 61 -> 0 of 400; harmless replies pooled 0.45% -> 0.18%; ConvAbuse "
    "AUROC 0.936 -> 0.935; chat AUROC 0.863 -> 0.863. The threshold rule now gives 0.50 (was 0.47), and sensitivity at "
    "the operating point fell 0.559 -> 0.532 (ConvAbuse recall 0.781 -> 0.758). A first reading on writer T2 (36 -> 3 "
    "of 388) failed its rule's condition 2b as written, a pooled chat AUROC that version 2 also misses; that rule was "
    "corrected and the same frozen candidate decided on T3, both written down before T3 wrote anything.",
    "Version 3's mask amended (2026-12-07, after a CI run): a URL-safe key without a digit (about 0.4% of "
    "secrets.token_urlsafe(24)) was not masked, and one such key moved a reply's score from 0.213 to 0.229. The mask "
    "now also takes digit-free tokens with upper case for 30%+ of their letters in two or more runs of capitals. "
    "Random 32-character URL-safe keys left unmasked: 0.44% -> 0.017% (16 characters: 6.7% -> 2.2%; "
    "benchmarks/toxicity_token_mask.py). It changes no training text, so the model is the same; of the held-out "
    "texts, it masks a key in 2 machine strings (flagged stays 0 of 400). CamelCase hashtags keep their words.",
]


def build_pipeline(max_word_features: int = 30000, max_char_features: int = 40000, c: float = 2.0):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    from tunelens.safety.instruments.toxicity import normalise

    features = FeatureUnion([
        ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), min_df=2, max_features=max_word_features,
                                 sublinear_tf=True, preprocessor=normalise)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=3, max_features=max_char_features,
                                 sublinear_tf=True, preprocessor=normalise)),
    ])
    return Pipeline([("features", features), ("clf", LogisticRegression(C=c, class_weight="balanced", max_iter=3000))])


def choose_threshold(sets, scores, max_fpr: float = 0.01) -> tuple[float, dict[str, Any]]:
    """The threshold with the best F1 on the labelled validation sets pooled, raised if needed so
    that at most ``max_fpr`` of the validation assistant replies (HH, CoCoNot) are flagged."""
    import numpy as np

    y = np.array([v for k in ("val:convabuse", "val:diasafety", "val:davidson") for v in sets[k]["labels"]])
    s = np.array([v for k in ("val:convabuse", "val:diasafety", "val:davidson") for v in scores[k]])
    harmless = np.array([v for k in ("val:hh", "val:coconot") for v in scores[k]])
    grid = np.round(np.arange(0.05, 0.96, 0.01), 2)
    f1s = []
    for t in grid:
        p = s >= t
        tp, fp, fn = (p & (y == 1)).sum(), (p & (y == 0)).sum(), (~p & (y == 1)).sum()
        f1s.append(2 * tp / (2 * tp + fp + fn))
    t_f1 = float(grid[int(np.argmax(f1s))])
    t_fpr = float(np.quantile(harmless, 1 - max_fpr)) + 1e-6
    t = round(max(t_f1, t_fpr), 3)
    return t, {"best_f1_threshold": t_f1, "harmless_fpr_threshold": round(t_fpr, 4), "max_harmless_fpr": max_fpr,
               "rule": "max(best pooled F1 on ConvAbuse valid + DiaSafety val + Davidson val, "
                       f"{1 - max_fpr:.0%} quantile of HH + CoCoNot validation replies)"}


def calibration(y: list[int], s: list[float], bins: int = 5) -> list[dict[str, Any]]:
    out = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, v in enumerate(s) if lo <= v < hi or (b == bins - 1 and v == 1.0)]
        if idx:
            out.append({"bin": [lo, hi], "n": len(idx), "mean_score": round(sum(s[i] for i in idx) / len(idx), 4),
                        "fraction_toxic": round(sum(y[i] for i in idx) / len(idx), 4)})
    return out


def train(data_dir: Path, out_path: Path, *, seed: int = 0, card_path: Path | None = CARD,
          doc_path: Path | None = None, max_word_features: int = 30000, max_char_features: int = 40000) -> dict:
    """Fit on the training parts, choose the threshold on validation, report on held-out sets;
    write the artifact, the card (JSON) and the human-readable page."""
    import joblib

    start = time.perf_counter()
    sets = build_sets(Path(data_dir), seed)
    x = [t for k, v in sets.items() if k.startswith("train:") for t in v["texts"]]
    y = [t for k, v in sets.items() if k.startswith("train:") for t in v["labels"]]
    # the chat sources are small beside Davidson: weight them up so tweets do not set the style
    weights = {"train:davidson": 1.0, "train:convabuse": 3.0, "train:diasafety": 2.0, "train:hh": 1.0,
               "train:coconot": 2.0, "train:written": 3.0, "train:ordinary_t1": 3.0}
    w = [weights[k] for k, v in sets.items() if k.startswith("train:") for _ in v["texts"]]
    pipe = build_pipeline(max_word_features, max_char_features)
    pipe.fit(x, y, clf__sample_weight=w)
    train_s = time.perf_counter() - start
    scores = {k: [float(p) for p in pipe.predict_proba(v["texts"])[:, 1]] if v["texts"] else []
              for k, v in sets.items() if not k.startswith("train:")}
    threshold, rule = choose_threshold(sets, scores)

    validation = []
    for key in LABELLED_TEST + HARMLESS_TEST + ("test:hh_pairs", "test:ordinary_t2", "test:ordinary_t3",
                                                          "test:machine_strings"):
        v = sets[key]
        fig = binary_figures(v["labels"], scores[key], threshold)
        entry = {"set": key.split(":", 1)[1], "description": SET_NAMES[key], **fig}
        if v["groups"]:
            entry["by_group"] = {}
            for g in sorted(set(v["groups"])):
                ids = [i for i, gg in enumerate(v["groups"]) if gg == g]
                sub = binary_figures([v["labels"][i] for i in ids], [scores[key][i] for i in ids], threshold)
                entry["by_group"][g] = {k: sub[k] for k in sub if k in ("n", "n_pos", "precision", "recall", "f1",
                                                                          "auroc", "false_positive_rate", "ci95")}
        validation.append(entry)
    harmless_y = [0] * sum(len(sets[k]["texts"]) for k in HARMLESS_TEST)
    harmless_s = [v for k in HARMLESS_TEST for v in scores[k]]
    harmless = binary_figures(harmless_y, harmless_s, threshold, auroc=False)
    validation.append({"set": "harmless_replies", "description": "HH + CoCoNot + written held-out replies pooled "
                       "(refusals and apologies included): target <= 2% flagged", **harmless})
    # the operating point: every held-out labelled row, pooled
    # the operating point: the held-out chat rows (ConvAbuse, DiaSafety Offending User and Biased
    # Opinion) and the harmless assistant replies, pooled; tweets and context-only labels left out
    keep = {k: [i for i, g in enumerate(sets[k]["groups"] or [None] * len(sets[k]["texts"]))
                if g in (None,) + DIASAFETY_TOXIC] for k in ("test:convabuse", "test:diasafety") + HARMLESS_TEST}
    pool_keys = tuple(keep)
    py = [sets[k]["labels"][i] for k in pool_keys for i in keep[k]]
    ps = [scores[k][i] for k in pool_keys for i in keep[k]]
    tp = sum(s >= threshold and t for s, t in zip(ps, py))
    tn = sum(s < threshold and not t for s, t in zip(ps, py))
    n_pos, n_neg = sum(py), len(py) - sum(py)
    chat_y = [sets[k]["labels"][i] for k in ("test:convabuse", "test:diasafety") for i in keep[k]]
    chat_s = [scores[k][i] for k in ("test:convabuse", "test:diasafety") for i in keep[k]]
    examples = _failure_examples(sets, scores, threshold)
    card = {
        "task": "toxicity", "name": "toxicity", "version": 3,
        "method": "TF-IDF word 1-2-grams + char_wb 2-5-grams (tweet marks, mentions, links and random-looking tokens "
                  "such as keys and hashes removed), "
                  "class-balanced logistic regression with per-source weights",
        "reproduce": "tunelens safety train-toxicity --data-dir ../shared/data",
        "threshold": threshold, "threshold_rule": rule,
        "training_data": [{"source": k.split(":", 1)[1], "licence": LICENCES[k.split(":", 1)[1]],
                           "rows": len(v["texts"]), "toxic": sum(v["labels"]), "weight": weights[k]}
                          for k, v in sets.items() if k.startswith("train:")],
        "label_choice": {"davidson": "class 0 (hate) or 1 (offensive) = toxic, 2 = non-toxic",
                         "convabuse": "toxic when most of the row's annotators chose an abusive level (-1, -2, -3)",
                         "diasafety": "Unsafe = toxic, for Offending User and Biased Opinion (trained); "
                                      "Toxicity Agreement is reported only: its replies are unsafe by context",
                         "assistant replies": "HH chosen, CoCoNot and written replies are all non-toxic"},
        "validation": validation,
        "chat_auroc": dict(zip(("auroc", "ci95"), auroc_ci(chat_y, chat_s))) | {
            "sets": "ConvAbuse test + DiaSafety test (Offending User, Biased Opinion) pooled", "n": len(chat_y)},
        "operating_point": {"sensitivity": round(tp / n_pos, 4), "specificity": round(tn / n_neg, 4),
                            "n_pos": n_pos, "n_neg": n_neg, "threshold": threshold,
                            "pooled_from": "ConvAbuse test, DiaSafety test (Offending User, Biased Opinion), "
                                           "HH, CoCoNot and written held-out replies"},
        "calibration": {"set": "pooled held-out sets (as the operating point)", "bins": calibration(py, ps)},
        "failure_modes": examples,
        "changes": CHANGES,
        "train_seconds": round(train_s, 1),
        # kept for the old API (load_scorer().info): Davidson held-out figures at 0.5 as before
        "davidson_heldout": _davidson_info(sets, scores),
    }
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    info = {**card["davidson_heldout"], "threshold": threshold, "card": "cards/toxicity.json"}
    joblib.dump({"pipeline": pipe, "threshold": threshold, "info": info}, out_path, compress=3)
    if card_path is not None:
        Path(card_path).parent.mkdir(parents=True, exist_ok=True)
        Path(card_path).write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if doc_path is not None:
        Path(doc_path).write_text(render_doc(card), encoding="utf-8")
    return card


def _davidson_info(sets, scores) -> dict[str, Any]:
    from sklearn.metrics import f1_score, roc_auc_score

    y, s = sets["test:davidson"]["labels"], scores["test:davidson"]
    pred = [int(v >= 0.5) for v in s]
    majority = int(sum(sets["train:davidson"]["labels"]) * 2 > len(sets["train:davidson"]["labels"]))
    return {"data_file": FILES["davidson"], "test_rows": len(y), "roc_auc": round(float(roc_auc_score(y, s)), 4),
            "f1": round(float(f1_score(y, pred)), 4),
            "majority_baseline_f1": round(float(f1_score(y, [majority] * len(y))), 4)}


def _failure_examples(sets, scores, threshold) -> list[dict[str, Any]]:
    out = []
    for key, want, what in (("test:hh", 0, "harmless HH reply flagged"), ("test:coconot", 0, "CoCoNot answer flagged"),
                            ("test:convabuse", 1, "abusive chat turn missed"), ("test:diasafety", 1, "unsafe reply missed"),
                            ("test:convabuse", 0, "non-abusive chat turn flagged")):
        v = sets[key]
        cand = [(scores[key][i], v["texts"][i]) for i in range(len(v["texts"]))
                if v["labels"][i] == want and ((scores[key][i] >= threshold) != bool(want))]
        cand.sort(reverse=not want)
        out.append({"mode": what, "set": key.split(":", 1)[1], "count": len(cand),
                    "examples": [{"text": t[:200], "score": round(s, 3)} for s, t in cand[:3]]})
    out.append({"mode": "harmful advice in polite words is not toxicity",
                "note": "polite instructions for a crime score low by design: that is the harm instrument's job"})
    return out


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _ci(c) -> str:
    return "" if not c else f" [{c[0]:.3f}, {c[1]:.3f}]"


def render_doc(card: dict[str, Any]) -> str:
    """docs/instruments/toxicity.md from the card's figures."""
    lines = ["# Toxicity instrument", "",
             "Generated by `tunelens safety train-toxicity` from `src/tunelens/safety/instruments/cards/toxicity.json`;",
             "do not edit by hand. Reproduce: `" + card["reproduce"] + "`.", "",
             "**What it measures**: whether a reply (or any text) contains slurs, harassment, hate or abuse. A refusal,",
             "an apology or an ordinary answer is not toxic. Harmful advice given politely is *not* toxicity (the harm",
             "instrument covers it).", "",
             f"Method: {card['method']}. Threshold {card['threshold']} ({card['threshold_rule']['rule']}).", ""]
    if card.get("changes"):
        lines += [f"## Changes in version {card['version']}", ""] + [f"- {c}" for c in card["changes"]] + [""]
    lines += ["## Training data", "", "| source | licence | rows | toxic | weight |", "| --- | --- | --- | --- | --- |"]
    for t in card["training_data"]:
        lines.append(f"| {t['source']} | {t['licence']} | {t['rows']} | {t['toxic']} | {t['weight']} |")
    lines += ["", "Labels: " + "; ".join(f"{k}: {v}" for k, v in card["label_choice"].items()) + ".", "",
              "## Held-out validation (95% intervals: Wilson for rates, bootstrap for AUROC)", "",
              "| set | n (toxic) | AUROC | precision | recall | F1 | flagged |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for v in card["validation"]:
        c = v.get("ci95", {})
        lines.append(f"| {v['set']} | {v['n']} ({v['n_pos']}) | "
                     + (f"{v['auroc']:.3f}{_ci(c.get('auroc'))}" if "auroc" in v else "–") + " | "
                     + (f"{v['precision']:.3f}{_ci(c.get('precision'))}" if "precision" in v else "–") + " | "
                     + (f"{v['recall']:.3f}{_ci(c.get('recall'))}" if "recall" in v else "–") + " | "
                     + (f"{v['f1']:.3f}" if "f1" in v else "–") + " | "
                     + f"{_pct(v['flag_rate'])}{_ci(c.get('flag_rate'))} |")
    lines += ["", "Sets: " + "; ".join(f"`{v['set']}`: {v['description']}" for v in card["validation"]) + ".", ""]
    for v in card["validation"]:
        for g, f in (v.get("by_group") or {}).items():
            lines.append(f"- {v['set']} / {g}: n={f['n']}, AUROC "
                         + (f"{f['auroc']:.3f}{_ci(f['ci95'].get('auroc'))}" if "auroc" in f else "n/a")
                         + (f", recall {f['recall']:.3f}" if "recall" in f else "")
                         + (f", false-positive rate {_pct(f.get('false_positive_rate'))}" if "false_positive_rate" in f else ""))
    ca = card["chat_auroc"]
    op = card["operating_point"]
    conv = next(v for v in card["validation"] if v["set"] == "convabuse")
    lines += ["", f"Target AUROC >= 0.90 on a held-out chat set: ConvAbuse test **{conv['auroc']:.3f}**"
              f"{_ci(conv['ci95']['auroc'])} (met). Pooled with DiaSafety ({ca['sets']}, n={ca['n']}): "
              f"{ca['auroc']:.3f}{_ci(ca['ci95'])} (not met: DiaSafety labels a reply unsafe for its context, "
              "which a reply-only scorer does not see).",
              "", f"Operating point (pooled held-out, used for Rogan–Gladen correction): sensitivity {op['sensitivity']:.3f}, "
              f"specificity {op['specificity']:.3f}, n_pos {op['n_pos']}, n_neg {op['n_neg']}.", "",
              "## Calibration", "", "| score bin | n | mean score | fraction toxic |", "| --- | --- | --- | --- |"]
    return card_tail(card, lines, "Scores follow the observed rate only roughly and only on this mix of sets; use the label.")


def card_tail(card: dict[str, Any], lines: list[str], score_note: str) -> str:
    """A trained scorer's card in Markdown, finished: its calibration bins, ``score_note`` and failure modes."""
    for b in card["calibration"]["bins"]:
        lines.append(f"| {b['bin'][0]:.1f}–{b['bin'][1]:.1f} | {b['n']} | {b['mean_score']:.3f} | {b['fraction_toxic']:.3f} |")
    lines += ["", score_note, "", "## Failure modes", ""]
    for f in card["failure_modes"]:
        if "examples" in f:
            lines.append(f"- **{f['mode']}** ({f['set']}, {f['count']} rows): "
                         + "; ".join(f"“{e['text'][:120]}” ({e['score']})" for e in f["examples"]))
        else:
            lines.append(f"- **{f['mode']}**: {f['note']}")
    return "\n".join(lines) + "\n"
