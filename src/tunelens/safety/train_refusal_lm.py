"""Train and validate the context-aware refusal instrument (``refusal-lm``); write its model and card.

    python -m tunelens.safety.train_refusal_lm [--data-dir DIR] [--features-cache FILE] [--no-write]

Trained only on the ``dev`` half of ``safety/data/replies_labelled.jsonl`` (labels: refusal or partial vs
full compliance); the ``test`` half is read once, for the card. Steps:

1. SmolLM2 features of every labelled reply in its request's context (``refusal_lm.reader``; the slow
   part, about 10-15 minutes for the 3,900 replies on the 2-core CPU; ``--features-cache`` keeps them);
2. the probe's regularisation ``C`` (of ``PROBE_CS``) chosen by out-of-fold F1 on the dev split
   (``N_FOLDS`` folds by split key: an HH dialogue, a prompt);
3. out-of-fold scores of the default refusal instrument (refitted without each fold) and of the probe,
   and a logistic regression over their logits (the stack); the threshold is the stack's out-of-fold
   F1-best on the dev split;
4. the test split scored by the shipped refusal instrument, the probe fitted on all dev rows and the stack.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

from tunelens.safety.instruments import refusal_lm as inst
from tunelens.safety.labelled import labeller_agreement, split_key
from tunelens.safety.train_metrics import agreement as train_agreement
from tunelens.safety.train_metrics import (
    binary_metrics,
    bootstrap_ci,
    f1_best_threshold,
    family_operating_points,
    reliability,
)

CARD_PATH = inst.Path(inst.__file__).resolve().parent / "cards" / "refusal-lm.json"
COMMAND = "python -m tunelens.safety.train_refusal_lm"
SEED = 13
N_FOLDS = 5
PROBE_CS = (0.003, 0.01, 0.03)
COST_SAMPLE = 256


def load_cache(cache: Path | None, config: dict[str, Any], key: str) -> dict[str, Any]:
    """The feature rows of ``cache`` (an .npz with ``x``, ``key`` and ``config``), by key, when it exists and was
    made with ``config``; else none (the probe trainers then compute them)."""
    import numpy as np

    if cache is None or not cache.is_file():
        return {}
    with np.load(cache, allow_pickle=False) as z:
        if json.loads(str(z["config"])) == config:
            return {str(k): row for k, row in zip(z[key], z["x"])}
    print(f"{cache}: made with other settings; recomputing", flush=True)
    return {}


def features_for(rows: list[dict[str, Any]], cache: Path | None) -> Any:
    """SmolLM2 features of ``rows`` (``id``, ``prompt``, ``text``), in their order. With ``cache`` (an .npz),
    rows already there (same settings) are read from it, the others computed and added to it."""
    import numpy as np

    config = {"layers": list(inst.LAYERS), "prompt_tokens": inst.PROMPT_TOKENS, "reply_tokens": inst.REPLY_TOKENS,
              "base_model": inst.BASE_MODEL}
    have = load_cache(cache, config, "ids")
    missing = [r for r in rows if r["id"] not in have]
    if missing:
        t0 = time.time()
        x = inst.reader().features([r["prompt"] for r in missing], [r["text"] for r in missing])
        print(f"features of {len(missing)} replies in {time.time() - t0:.0f} s", flush=True)
        have.update({r["id"]: row for r, row in zip(missing, x)})
        if cache is not None:
            ids = sorted(have)
            np.savez(cache, x=np.stack([have[i] for i in ids]), ids=np.array(ids), config=json.dumps(config))
    return np.stack([have[r["id"]] for r in rows])


def out_of_fold(folds: list[int], fit_predict: Any) -> list[float]:
    """Scores of every row from a model that did not see its fold: ``fit_predict(outside, inside)`` fits on
    the rows (indices) outside a fold and returns the scores of the rows inside it."""
    out = [0.0] * len(folds)
    for k in sorted(set(folds)):
        inside = [i for i, f in enumerate(folds) if f == k]
        outside = [i for i, f in enumerate(folds) if f != k]
        for i, s in zip(inside, fit_predict(outside, inside)):
            out[i] = s
    return out


def seconds_per_10k(rows: list[dict[str, Any]]) -> int:
    """Feature extraction time per 10,000 replies, timed on ``rows`` (the model load apart)."""
    inst.reader()
    t0 = time.perf_counter()
    inst.reader().features([r["prompt"] for r in rows], [r["text"] for r in rows])
    return round((time.perf_counter() - t0) / len(rows) * 10_000)


def fit_probe(x: Any, y: list[bool], c: float) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    probe = LogisticRegression(C=c, max_iter=3000, class_weight="balanced").fit(scaler.transform(x), [int(v) for v in y])
    return {"scaler": scaler, "probe": probe}


def parse_args(prog: str, doc: str, argv: list[str] | None) -> argparse.Namespace:
    """The options of the two probe trainers (this one and ``train_harm_lm``)."""
    ap = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--features-cache", type=Path, default=None, help="an .npz file that keeps the SmolLM2 features")
    ap.add_argument("--no-write", action="store_true")
    return ap.parse_args(argv)


def failure_modes(rows: list[dict[str, Any]], gold: list[bool], scores: list[float], pred: list[bool], gold_key: str,
                  missed: str, flagged: str, k: int = 4) -> list[dict[str, Any]]:
    """The card's failure modes: counts and the first ``k`` examples of false negatives and false positives."""
    def ex(items):
        return [{"family": r["family"], "prompt": r["prompt"][-160:], "text": r["text"][:200], "gold": r[gold_key],
                 "score": round(s, 3)} for r, s in items[:k]]

    fn = [(r, s) for r, g, s, p in zip(rows, gold, scores, pred) if g and not p]
    fp = [(r, s) for r, g, s, p in zip(rows, gold, scores, pred) if p and not g]
    return [{"mode": missed, "count": len(fn), "examples": ex(fn)}, {"mode": flagged, "count": len(fp), "examples": ex(fp)}]


def write(model: dict[str, Any], card: dict[str, Any], artifact: Path, card_path: Path) -> None:
    """Write a probe instrument's model and card."""
    import joblib

    artifact.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, artifact, compress=3)
    card_path.write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {artifact} ({artifact.stat().st_size // 1024} KiB) and {card_path}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    from tunelens.safety import train_refusal
    from tunelens.safety.instruments import get_instrument

    args = parse_args(COMMAND, __doc__, argv)
    t0 = time.time()
    labelled = train_refusal.labelled_rows(args.data_dir)  # rows with a refusal label (ambiguous left out)
    dev = [r for r in labelled if r["split"] == "dev"]
    test = [r for r in labelled if r["split"] == "test"]
    x_all = features_for(dev + test, args.features_cache)
    cost = seconds_per_10k(test[:COST_SAMPLE])  # timed whatever the cache held
    xd, xt = x_all[: len(dev)], x_all[len(dev):]
    yd = [r["label"] != "full_compliance" for r in dev]
    yt = [r["label"] != "full_compliance" for r in test]
    keys = sorted({split_key(r) for r in dev})
    random.Random(SEED).shuffle(keys)
    fold_of = {k: i % N_FOLDS for i, k in enumerate(keys)}
    folds = [fold_of[split_key(r)] for r in dev]

    def probe_oof(c: float) -> list[float]:
        def fp(outside, inside):
            m = fit_probe(xd[outside], [yd[i] for i in outside], c)
            return inst.probe_scores(m, xd[inside])
        return out_of_fold(folds, fp)

    probe_choice = {}
    oof_probe_by_c = {}
    for c in PROBE_CS:
        oof_probe_by_c[c] = probe_oof(c)
        probe_choice[str(c)] = round(f1_best_threshold(yd, oof_probe_by_c[c])[1], 4)
    best_c = max(PROBE_CS, key=lambda c: probe_choice[str(c)])
    oof_probe = oof_probe_by_c[best_c]
    # the default instrument's out-of-fold scores: refitted without each fold's dev rows
    ref_train = train_refusal.training_rows(args.data_dir, labelled=labelled)

    def tfidf_fp(outside, inside):
        src = {dev[i]["src_id"] for i in inside}
        model = train_refusal.fit([r for r in ref_train if not (r.get("split") == "dev" and r.get("src_id") in src)])
        return [p[1] + p[2] for p in train_refusal._predict(model, [dev[i]["text"] for i in inside])]

    oof_tfidf = out_of_fold(folds, tfidf_fp)
    z = [[inst._logit(a), inst._logit(b)] for a, b in zip(oof_tfidf, oof_probe)]

    def stack_fp(outside, inside):
        lr = LogisticRegression(max_iter=2000).fit([z[i] for i in outside], [yd[i] for i in outside])
        return list(lr.predict_proba([z[i] for i in inside])[:, 1])

    oof_stack = out_of_fold(folds, stack_fp)
    threshold, dev_f1 = f1_best_threshold(yd, oof_stack)
    stack = LogisticRegression(max_iter=2000).fit(z, yd)
    probe = fit_probe(xd, yd, best_c)
    model = {**probe, "stack_coef": [float(v) for v in stack.coef_[0]], "stack_intercept": float(stack.intercept_[0]),
             "threshold": round(threshold, 4), "base_model": inst.BASE_MODEL, "probe_c": best_c}

    # the test split, once
    p_tfidf = [p[1] + p[2] for p in get_instrument("refusal").probabilities([r["text"] for r in test])]  # type: ignore[attr-defined]
    p_probe = inst.probe_scores(model, xt)
    scores = [inst.stack_score(model, a, b) for a, b in zip(p_tfidf, p_probe)]
    pred = [s >= model["threshold"] for s in scores]
    pooled = binary_metrics(yt, pred)
    pooled["ci95"] = bootstrap_ci(yt, pred, seed=SEED)
    fams = sorted({r["family"] for r in test})
    by_family = {f: binary_metrics([yt[i] for i, r in enumerate(test) if r["family"] == f],
                                   [pred[i] for i, r in enumerate(test) if r["family"] == f]) for f in fams}
    default_pred = [s >= 0.5 for s in p_tfidf]
    default = binary_metrics(yt, default_pred)
    families = [r["family"] for r in test]
    labeller = ("labelled by an AI assistant (Claude) reading each reply in its context, following XSTest's "
                "definitions (the same labels as the refusal card's)")
    card = {
        "task": "refusal", "name": "refusal-lm", "version": 2,
        "model": (f"logistic regression over the logits of two scores ({model['stack_coef'][0]:+.2f} default refusal "
                  f"instrument, {model['stack_coef'][1]:+.2f} probe; intercept {model['stack_intercept']:+.2f}): the default "
                  "refusal instrument's P(refusal or partial), and a probe (standardised logistic regression, C "
                  f"{best_c}) over SmolLM2-135M-Instruct's hidden states of layers {', '.join(map(str, inst.LAYERS))}, "
                  f"averaged over the reply's first {inst.REPLY_TOKENS} tokens read after 'User: <the request's last "
                  f"line, last {inst.PROMPT_TOKENS} tokens>'"),
        "threshold": model["threshold"],
        "threshold_note": "the stack's F1-best threshold on the dev split's out-of-fold scores; no test row was used",
        "reproduce": COMMAND,
        "training_data": [
            {"source": f"labelled dev split: {f}", "licence": "labels: project (AI-labelled); texts: the family's source, "
             "see SOURCES.md", "rows": sum(r["family"] == f for r in dev)} for f in sorted({r["family"] for r in dev})]
            + [{"source": "SmolLM2-135M-Instruct (feature extractor, not trained)", "licence": "Apache-2.0", "rows": 0},
               {"source": "the default refusal instrument (see cards/refusal.json)", "licence": "see that card", "rows": 0}],
        "validation": [
            {"set": "labelled test split (never trained on or used to choose anything), refusal or partial vs full "
                    "compliance", "labeller": labeller,
             **{k: pooled[k] for k in ("n", "n_pos", "n_neg", "tp", "fp", "fn", "tn", "precision", "recall", "f1", "accuracy")},
             "ci95": pooled["ci95"], "by_group": by_family,
             "previous_version": {"note": "the default refusal instrument on the same replies", "precision": default["precision"],
                                  "recall": default["recall"], "f1": default["f1"]}},
        ],
        "agreement_with_people": {
            "note": "refusal-or-partial rate of SmolLM2-135M-Instruct's replies in the test split, as labelled and as "
                    "the instrument counts it; target: within 0.05",
            **train_agreement(families, yt, pred, what="refusal-or-partial")},
        "labeller_agreement": labeller_agreement("refusal", test, {r["id"]: p for r, p in zip(test, pred)}),
        "operating_point": {"sensitivity": pooled["recall"], "specificity": pooled["specificity"],
                            "n_pos": pooled["n_pos"], "n_neg": pooled["n_neg"],
                            "note": "pooled over the labelled test split (random replies of five model families)"},
        "operating_points_by_family": family_operating_points(families, yt, pred),
        "calibration": reliability(yt, scores),
        "dev_choices": {"probe_c_out_of_fold_f1": probe_choice, "chosen_c": best_c, "stack_out_of_fold_f1": round(dev_f1, 4)},
        "cost": {"seconds_per_10000_replies": cost,
                 "note": f"feature extraction timed on {COST_SAMPLE} test replies on this machine (SmolLM2 forward pass up to layer "
                         f"{max(inst.LAYERS)}, batches of {inst.BATCH}); the default refusal instrument takes about 3 s"},
        "failure_modes": [],
        "notes": [
            "Tried against this instrument and not adopted (2026-12-07, "
            "docs/instruments/preregistration/refusal-harm-ft.md, committed before training): SmolLM2 itself "
            "tuned as a classifier (LoRA on layers 22-29 and a two-output head over the reply read after the "
            "request; trained on four dev folds, the epoch and threshold chosen on the fifth). Test F1 0.644 "
            "[0.571, 0.706] against this instrument's 0.708 (anthropic_hh 0.560 against 0.627), so this one "
            "stays. `python -m tunelens.safety.train_ft --out DIR` reproduces it (about 22 minutes on the 2-core "
            "CPU).",
            "Opt-in: get_instrument('refusal', name='refusal-lm') or `tunelens safety classify --task refusal --instrument "
            "refusal-lm`. The evaluation, the server and the harm instrument use the default refusal instrument, whose "
            "cost fits the 60-second target; this one does not, and its card says what it costs.",
            "It reads the request: without a prompt it reads the reply after an empty request, which is not what it was "
            "trained on. How much the request itself adds was not measured apart (that needs a second feature pass "
            "without it); in a spot check the question back 'Why would you want to do that?' scored 0.92 after a "
            "request to poison a dog and 0.92 after a request for party ideas, so the gain over the default seems to "
            "come mostly from what the model makes of the reply's wording, and a question back to a benign request "
            "can still be read as a refusal.",
            "Measured before this trainer was written, in a first experiment on the same dev and test rows (other fold "
            "assignment): test F1 0.673-0.682 for the same design, against 0.587 for the default.",
            "Labels are an AI assistant's (Claude's), not human labels (see the refusal card); the labellers' own F1 "
            "(labeller_agreement) bounds what can be shown.",
            "Version 2 (2026-12-07) is the same design retrained on the dev split grown by 1,685 labelled mid-dialogue HH-RLHF turns (the refusal card's version 5 note), over the version 5 default refusal instrument; decided before the labels were read (docs/instruments/preregistration/refusal-v5-harm-v6.md). Test split, version 1 -> 2: F1 0.660 -> 0.708 (precision 0.646 -> 0.687, recall 0.674 -> 0.731), HH-RLHF recall 0.59 -> 0.64; the default it stacks went 0.587 -> 0.637 on the same rows.",
        ],
        "not_shown": ["figures on XSTest, jailbreak collections or the OpenAI moderation set (reserved outside checks)",
                      "a leave-one-family-out figure: the probe is trained on the labelled families only"],
    }
    card["failure_modes"] = failure_modes(test, yt, scores, pred, "label", "missed refusals (false negatives)",
                                          "compliance read as refusal (false positives)")
    print(json.dumps({"test": {k: pooled[k] for k in ("n", "n_pos", "precision", "recall", "f1")},
                      "default_on_test": {k: default[k] for k in ("precision", "recall", "f1")},
                      "by_family_recall": {f: by_family[f]["recall"] for f in fams},
                      "dev": card["dev_choices"], "threshold": model["threshold"], "cost_s_per_10k": cost}, indent=1))
    if not args.no_write:
        write(model, card, inst.ARTIFACT, CARD_PATH)
    print(f"done in {time.time() - t0:.0f} s")
    return card


if __name__ == "__main__":
    main()
