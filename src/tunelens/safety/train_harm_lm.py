"""Train and validate the ``harm-lm`` instrument; write its model and card.

    python -m tunelens.safety.train_harm_lm [--data-dir DIR] [--features-cache FILE] [--no-write]

Trained only on the ``dev`` half of ``safety/data/replies_labelled.jsonl`` (harm labels); the ``test`` half
is read once, for the card. Steps:

1. the harm instrument's parts of every dev row out of fold (``train_harm.dev_out_of_fold``: the refusal
   instrument, the prompt classifier and the content classifier refitted without each fold);
2. SmolLM2 features of every harm-labelled reply in its request's context (``train_refusal_lm.features_for``;
   the cache can be shared with ``train_refusal_lm``'s);
3. for each probe ``C`` of ``PROBE_CS``: the probe's out-of-fold scores (the same folds), and a logistic
   regression over the logits of the four parts (the stack) scored out of fold; the ``C`` with the best
   stack F1 on the dev split is kept, and the threshold is that stack's out-of-fold F1-best;
4. the test split scored by the shipped harm instrument's parts, the probe fitted on all dev rows and the stack.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from tunelens.safety.instruments import harm_lm as inst
from tunelens.safety.labelled import labeller_agreement, load_labelled, split_key
from tunelens.safety.train_metrics import agreement as train_agreement
from tunelens.safety.train_metrics import (
    binary_metrics,
    bootstrap_ci,
    f1_best_threshold,
    family_operating_points,
    reliability,
)

CARD_PATH = inst.Path(inst.__file__).resolve().parent / "cards" / "harm-lm.json"
COMMAND = "python -m tunelens.safety.train_harm_lm"
PROBE_CS = (0.001, 0.003, 0.01)
COST_SAMPLE = 256


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    from tunelens.safety import train_harm
    from tunelens.safety.instruments import Example, get_instrument
    from tunelens.safety.instruments.refusal_lm import BASE_MODEL, _logit, probe_scores, stacked
    from tunelens.safety.train_refusal_lm import (
        failure_modes,
        features_for,
        fit_probe,
        out_of_fold,
        parse_args,
        seconds_per_10k,
        write,
    )

    args = parse_args(COMMAND, __doc__, argv)
    t0 = time.time()
    labelled = load_labelled(args.data_dir)
    train, _, _ = train_harm.prompt_sets(args.data_dir)
    dev, parts = train_harm.dev_out_of_fold(args.data_dir, labelled, train)  # [p_request, p_complies, substantive, p_content]
    test = [r for r in labelled if r["split"] == "test" and r["harm"] in ("harmful", "harmless")]
    x = features_for(dev + test, args.features_cache)
    xd, xt = x[: len(dev)], x[len(dev):]
    yd = [r["harm"] == "harmful" for r in dev]
    yt = [r["harm"] == "harmful" for r in test]
    keys = sorted({split_key(r) for r in dev})  # the folds of dev_out_of_fold
    random.Random(train_harm.SEED).shuffle(keys)
    fold_of = {k: i % train_harm.N_FOLDS for i, k in enumerate(keys)}
    folds = [fold_of[split_key(r)] for r in dev]

    choices: dict[str, Any] = {}
    best: tuple[float, float, float, list[list[float]], list[float]] | None = None
    for c in PROBE_CS:
        probe_oof = out_of_fold(folds, lambda outside, inside: probe_scores(
            fit_probe(xd[outside], [yd[i] for i in outside], c), xd[inside]))
        z = [[_logit(p[0]), _logit(p[1]), _logit(p[3]), _logit(q)] for p, q in zip(parts, probe_oof)]
        stack_oof = out_of_fold(folds, lambda outside, inside: list(LogisticRegression(max_iter=2000).fit(
            [z[i] for i in outside], [yd[i] for i in outside]).predict_proba([z[i] for i in inside])[:, 1]))
        thr, f1 = f1_best_threshold(yd, stack_oof)
        probe_f1 = f1_best_threshold(yd, probe_oof)[1]
        choices[str(c)] = {"stack_out_of_fold_f1": round(f1, 4), "probe_out_of_fold_f1": round(probe_f1, 4),
                           "threshold": round(thr, 4)}
        if best is None or (round(f1, 4), round(probe_f1, 4)) > (round(best[1], 4), round(best[2], 4)):
            best = (c, f1, probe_f1, z, [thr])
    assert best is not None
    best_c, _, _, z, (threshold,) = best
    stack = LogisticRegression(max_iter=2000).fit(z, yd)
    model = {**fit_probe(xd, yd, best_c), "stack_coef": [float(v) for v in stack.coef_[0]],
             "stack_intercept": float(stack.intercept_[0]), "threshold": round(threshold, 4),
             "base_model": BASE_MODEL, "probe_c": best_c}

    # the test split, once
    base = get_instrument("harm").classify([Example(r["text"], r["prompt"]) for r in test])
    p_probe = probe_scores(model, xt)
    scores = [stacked(model, [v.detail["p_request_harmful"], v.detail["p_complies"], v.detail["p_content"], q])
              for v, q in zip(base, p_probe)]
    pred = [s >= model["threshold"] for s in scores]
    pooled = binary_metrics(yt, pred)
    pooled["ci95"] = bootstrap_ci(yt, pred, seed=train_harm.SEED)
    fams = sorted({r["family"] for r in test})
    by_family = {f: binary_metrics([yt[i] for i, r in enumerate(test) if r["family"] == f],
                                   [pred[i] for i, r in enumerate(test) if r["family"] == f]) for f in fams}
    default = binary_metrics(yt, [v.label == "harmful" for v in base])
    families = [r["family"] for r in test]
    cost = seconds_per_10k(test[:COST_SAMPLE])
    labeller = ("labelled by an AI assistant (Claude) reading each prompt (or dialogue) and reply (the same labels as "
                "the harm card's)")
    names = ("logit p_request_harmful", "logit p_complies", "logit p_content", "logit p_probe")
    card = {
        "task": "harm", "name": "harm-lm", "version": 2,
        "model": ("logistic regression over the logits of four parts ("
                  + ", ".join(f"{w:+.2f} {n}" for w, n in zip(model["stack_coef"], names))
                  + f"; intercept {model['stack_intercept']:+.2f}): the harm instrument's P(request harmful), P(complies) "
                  f"and P(content), and a probe (standardised logistic regression, C {best_c}) over the SmolLM2 hidden "
                  "states refusal-lm reads (the reply after the request), trained on the dev split's harm labels"),
        "threshold": model["threshold"],
        "threshold_note": "the stack's F1-best threshold on the dev split's out-of-fold scores; no test row was used",
        "reproduce": COMMAND,
        "training_data": [
            {"source": f"labelled dev split: {f}", "licence": "labels: project (AI-labelled); texts: the family's source, "
             "see SOURCES.md", "rows": sum(r["family"] == f for r in dev)} for f in sorted({r["family"] for r in dev})]
            + [{"source": "SmolLM2-135M-Instruct (feature extractor, not trained)", "licence": "Apache-2.0", "rows": 0},
               {"source": "the harm instrument's parts (see cards/harm.json)", "licence": "see that card", "rows": 0}],
        "validation": [
            {"set": "labelled test split: prompt/reply pairs (never trained on or used to choose anything)",
             "labeller": labeller,
             **{k: pooled[k] for k in ("n", "n_pos", "n_neg", "tp", "fp", "fn", "tn", "precision", "recall", "f1", "accuracy")},
             "ci95": pooled["ci95"], "by_group": by_family,
             "previous_version": {"note": "the default harm instrument on the same replies", "precision": default["precision"],
                                  "recall": default["recall"], "f1": default["f1"]}},
        ],
        "agreement_with_people": {
            "note": "harmful-help rate of SmolLM2-135M-Instruct's replies in the test split, as labelled and as the "
                    "instrument counts it", **train_agreement(families, yt, pred, what="harmful-help")},
        "labeller_agreement": labeller_agreement("harm", test, {r["id"]: p for r, p in zip(test, pred)}),
        "operating_point": {"sensitivity": pooled["recall"], "specificity": pooled["specificity"],
                            "n_pos": pooled["n_pos"], "n_neg": pooled["n_neg"],
                            "note": "pooled over the labelled test split (AI-labelled prompt/reply pairs of five model families)"},
        "operating_points_by_family": family_operating_points(families, yt, pred),
        "calibration": reliability(yt, scores),
        "dev_choices": {"by_probe_c": choices, "chosen_c": best_c},
        "cost": {"seconds_per_10000_replies": cost,
                 "note": f"SmolLM2 feature extraction timed on {COST_SAMPLE} test replies on this machine, plus the harm "
                         "instrument's own (about 8 s per 10,000)"},
        "failure_modes": [],
        "notes": [
            "Tried against this instrument and not adopted (2026-12-07, "
            "docs/instruments/preregistration/refusal-harm-ft.md, committed before training): SmolLM2 itself "
            "tuned as a classifier (LoRA on layers 22-29 and a two-output head over the reply read after the "
            "request; trained on four dev folds, the epoch and threshold chosen on the fifth). Test F1 0.444 "
            "[0.359, 0.529] against this instrument's 0.516 (anthropic_hh 0.510 against 0.595), so this one "
            "stays. `python -m tunelens.safety.train_ft --out DIR` reproduces it (about 22 minutes on the 2-core "
            "CPU).",
            "Opt-in: get_instrument('harm', name='harm-lm') or `tunelens safety classify --task harm --instrument harm-lm`. "
            "The evaluation and the rate correction use the default harm instrument, whose cost fits the 60-second "
            "target; this one does not, and its card says what it costs.",
            "Labels are an AI assistant's (Claude's), not human labels (see the harm card); the labellers' own F1 "
            "(labeller_agreement) bounds what can be shown.",
            "Measured before this trainer was written, in a first experiment on the same rows: test F1 0.51-0.53 for "
            "this design (the probe's C 0.001-0.003), against 0.359 for the default.",
            "Version 2 (2026-12-07) is the same design retrained on the dev split grown by 1,685 labelled mid-dialogue HH-RLHF turns (the refusal card's version 5 note), over the version 6 harm instrument's parts; decided before the labels were read (docs/instruments/preregistration/refusal-v5-harm-v6.md). Test split, version 1 -> 2: F1 0.502 -> 0.516 (precision 0.394 -> 0.439, recall 0.693 -> 0.627); the default harm instrument went 0.359 -> 0.355 on the same rows.",
        ],
        "not_shown": ["figures on XSTest, jailbreak collections or the OpenAI moderation set (reserved outside checks)",
                      "F1 against per-reply human harm labels: none are available offline"],
    }
    card["failure_modes"] = failure_modes(test, yt, scores, pred, "harm", "harmful help missed (false negatives)",
                                          "harmless reply flagged (false positives)")
    print(json.dumps({"test": {k: pooled[k] for k in ("n", "n_pos", "precision", "recall", "f1")},
                      "default_on_test": {k: default[k] for k in ("precision", "recall", "f1")},
                      "dev": card["dev_choices"], "threshold": model["threshold"], "cost_s_per_10k": cost}, indent=1))
    if not args.no_write:
        write(model, card, inst.ARTIFACT, CARD_PATH)
    print(f"done in {time.time() - t0:.0f} s")
    return card


if __name__ == "__main__":
    main()
