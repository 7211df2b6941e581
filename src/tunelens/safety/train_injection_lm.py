"""Train and validate candidate 11 for the injection detector (``injection-lm``, not adopted); write its model and card.

    python -m tunelens.safety.train_injection_lm --base v9 --out DIR [--data-dir DIR] [--features-cache FILE]
        [--decision FILE]

``--base v9`` stacks the probe on version 9 trained aside, with version 9's training texts (candidate 11 as it was
decided); the default ``--base shipped`` stacks it on the shipped detector.

Writes DIR/injection_lm.joblib, DIR/result.json (what ``benchmarks/injection_decision.py --lm DIR`` reads), DIR/card.json
and DIR/card.md; nothing in the package (the candidate failed its pre-registered decision,
docs/instruments/preregistration/injection-lm.md). Reads the default injection instrument's sets
(``train_injection.build_sets``: its training rows, its validation rows and its held-out sets), so the two are trained
and judged on the same texts. Steps:

1. SmolLM2 features (``injection_lm.features``; the slow part: about 31,000 texts, about 15 minutes on the 2-core
   CPU; ``--features-cache`` keeps them) of the probe's training rows (every row of the training sets that hold
   attacks, at most ``BENIGN_CAP`` of every benign training set), the validation rows and the held-out rows;
2. the probe's layers and regularisation chosen by out-of-fold F1 on those training rows (``N_FOLDS`` folds);
3. out-of-fold scores of the default instrument (its pipeline refitted on all its training rows but a fold's) and
   of the probe, and a logistic regression over their logits (the stack);
4. the threshold by the default instrument's own rule (``train_injection.choose_threshold``: at most 1% of each
   benign validation kind flagged), from the shipped default instrument and the probe fitted on all its rows;
5. the held-out sets scored by both, for the card; the held-out authors that had served a decision before it
   (``NOT_BLIND``) give the measure its design was checked on.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path
from typing import Any

import tunelens.safety.train_injection as ti
from tunelens.safety.instruments import injection_lm as inst
from tunelens.safety.instruments.refusal_lm import _logit, probe_scores
from tunelens.safety.train_refusal_lm import fit_probe, load_cache, out_of_fold

COMMAND = "python -m tunelens.safety.train_injection_lm"
SEED = 17
N_FOLDS = 5
BENIGN_CAP = 700
LAYER_CHOICES = ((16,), (8, 16), (4, 8, 12, 16))
PROBE_CS = (0.01, 0.03, 0.1)


def _hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def features_for(texts: list[str], cache: Path | None, *, progress: bool = True) -> Any:
    """``injection_lm.features`` of ``texts``, in order; with ``cache`` (an .npz keyed by the texts' sha1 and
    the reader's settings) texts already there are read from it and the others computed and added to it, in
    chunks (an interrupted run keeps what it did)."""
    import numpy as np

    config = {"layers": list(inst.LAYERS), "head": inst.HEAD_TOKENS, "tail": inst.TAIL_TOKENS,
              "base_model": inst.BASE_MODEL}
    have = load_cache(cache, config, "keys")
    todo = list(dict.fromkeys(t for t in texts if _hash(t) not in have))
    t0, chunk = time.time(), 1024
    for i in range(0, len(todo), chunk):
        part = todo[i:i + chunk]
        have.update(zip(map(_hash, part), inst.features(part)))
        if cache is not None:
            keys = sorted(have)
            np.savez(cache, x=np.stack([have[k] for k in keys]).astype(np.float32), keys=np.array(keys),
                     config=json.dumps(config))
        if progress:
            done, el = i + len(part), time.time() - t0
            print(f"features: {done}/{len(todo)} texts, {el:.0f} s, ETA {el / done * (len(todo) - done):.0f} s",
                  flush=True)
    return np.stack([have[_hash(t)] for t in texts]) if texts else np.zeros((0, 0))


def probe_rows(sets: dict[str, dict[str, Any]], seed: int = SEED) -> list[tuple[str, str, int]]:
    """The probe's training rows ``(set, text, label)``: every row of a training set that holds attacks, and at
    most ``BENIGN_CAP`` rows (a seeded sample) of each benign training set."""
    rng = random.Random(seed)
    rows = []
    for key, s in sets.items():
        if not key.startswith("train:"):
            continue
        pairs = list(zip(s["texts"], s["labels"]))
        if not any(y for _, y in pairs) and len(pairs) > BENIGN_CAP:
            pairs = rng.sample(pairs, BENIGN_CAP)
        rows += [(key, t, int(y)) for t, y in pairs]
    return rows


def folds_of(n: int, seed: int = SEED) -> list[int]:
    rng = random.Random(seed)
    f = [i % N_FOLDS for i in range(n)]
    rng.shuffle(f)
    return f


def out_of_fold_probe(x: Any, y: list[int], folds: list[int], c: float) -> list[float]:
    """The probe's score of every row from a probe fitted without the row's fold."""
    import numpy as np

    def fit_predict(outside, inside):
        return probe_scores(fit_probe(x[outside], [bool(y[i]) for i in outside], c), x[np.asarray(inside)])

    return out_of_fold(folds, fit_predict)


def out_of_fold_default(sets: dict[str, dict[str, Any]], rows: list[tuple[str, str, int]], folds: list[int]) -> list[float]:
    """The default instrument's score of every probe row, from its pipeline refitted on all its training rows but
    the fold's probe rows (read through its views and rules, as it scores)."""
    from tunelens.safety.instruments.injection import normalise

    train = [(t, y) for k, s in sets.items() if k.startswith("train:") for t, y in zip(s["texts"], s["labels"])]
    out = [0.0] * len(rows)
    for k in range(N_FOLDS):
        held = {rows[i][1] for i in range(len(rows)) if folds[i] == k}
        pipe = ti.build_pipeline().fit([normalise(t) for t, _ in train if t not in held],
                                       [y for t, y in train if t not in held])
        idx = [i for i in range(len(rows)) if folds[i] == k]
        for i, sc in zip(idx, ti._scores(pipe, [rows[i][1] for i in idx])):
            out[i] = sc
        print(f"default instrument, fold {k + 1}/{N_FOLDS} refitted and scored", flush=True)
    return out


def stack_fit(parts: list[list[float]], y: list[int]) -> tuple[list[float], float]:
    from sklearn.linear_model import LogisticRegression

    z = [[_logit(p) for p in row] for row in zip(*parts)]
    lr = LogisticRegression(C=1.0, max_iter=1000).fit(z, y)
    return [round(float(w), 4) for w in lr.coef_[0]], round(float(lr.intercept_[0]), 4)


def author_measures(sets: dict[str, dict[str, Any]], scores: dict[str, list[float]], threshold: float,
                    prefix: str) -> dict[str, Any]:
    """The decision measure on one held-out author (``test:<prefix>_<group>``): attack recall (direct and
    indirect pooled) minus the rate of look-alikes flagged, with its parts."""
    def flagged(groups):
        keys = [f"test:{prefix}_{g}" for g in groups if f"test:{prefix}_{g}" in sets]
        return sum(s >= threshold for k in keys for s in scores[k]), sum(len(scores[k]) for k in keys)

    out = {g: flagged((g,)) for g in ("direct", "indirect", "benign_user", "benign_docs", "benign_system", "ordinary")}
    a, n = flagged(("direct", "indirect"))
    la, ln = flagged(("benign_user", "benign_docs", "benign_system"))
    out["measure"] = round(a / n - la / ln, 4)
    return out


COST_SAMPLE = 256


def seconds_per_10k(texts: list[str]) -> int:
    """Feature extraction time per 10,000 texts, timed on ``texts`` (the model load apart)."""
    inst.features(texts[:2])
    t0 = time.perf_counter()
    inst.features(texts)
    return round((time.perf_counter() - t0) / len(texts) * 10_000)


def build_card(sets: dict[str, dict[str, Any]], rows: list[tuple[str, str, int]], result: dict[str, Any],
               scores: dict[str, list[float]], base_scores: dict[str, list[float]], base_threshold: float,
               cost: int, decision: dict[str, Any] | None, default_version: int) -> dict[str, Any]:
    """The card: the default card's held-out figures (``train_injection.heldout_figures``) for the stack, the
    default's rates on the same groups beside them, the choices made on the training rows, the not-blind
    authors' measures and, once run, the pre-registered decision."""
    from collections import Counter

    figures = ti.heldout_figures(sets, scores, result["threshold"])
    base = ti.heldout_figures(sets, base_scores, base_threshold)["by_group"]
    for g, f in figures["by_group"].items():
        f["default_rate"] = base[g]["rate"]
    per_set, pos = Counter(r[0] for r in rows), Counter(r[0] for r in rows if r[2])
    d = result["design"]
    return {
        "task": "injection", "name": "injection-lm", "version": 1,
        "method": (f"a logistic regression over the logits of two scores (coefficients {result['stack']['coef']}, "
                   f"intercept {result['stack']['intercept']}): the default injection instrument's score (version "
                   f"{default_version}), and a probe (standardised "
                   f"logistic regression, C {d['c']}) over SmolLM2-135M-Instruct's hidden states of layers "
                   f"{', '.join(map(str, d['layers']))}, averaged over the normalised text's first {inst.HEAD_TOKENS} "
                   f"and last {inst.TAIL_TOKENS} tokens; fitted on out-of-fold scores of the probe's training rows"),
        "reproduce": COMMAND + " --base v9 --out DIR",
        "threshold": result["threshold"], "threshold_rule": result["threshold_rule"],
        "training_data": [{"source": k.split(":", 1)[1], "licence": ti.LICENCES[sets[k]["source"]], "rows": per_set[k],
                           "injections": pos[k], "dropped_as_heldout": sets[k]["dropped"]} for k in per_set] + [
            {"source": "SmolLM2-135M-Instruct (feature extractor, not trained)", "licence": "Apache-2.0", "rows": 0,
             "injections": 0, "dropped_as_heldout": 0}],
        "validation_data": [{"source": k.split(":", 1)[1], "licence": ti.LICENCES[sets[k]["source"]],
                             "rows": len(sets[k]["texts"]), "injections": sum(sets[k]["labels"]),
                             "dropped_as_heldout": sets[k]["dropped"]} for k in sets if k.startswith("val:")],
        "licence_note": (f"The probe is trained on the default instrument's training rows (every row of the sets that "
                         f"hold attacks, at most {BENIGN_CAP} of each benign set; the same licences), its threshold "
                         "chosen on the same validation rows by the same rule."),
        "dev_choices": {"probe_layers_out_of_fold_f1": d["by_layers"], "probe_c_out_of_fold_f1": d["by_c"],
                        "chosen_layers": d["layers"], "chosen_c": d["c"]},
        "not_blind_authors": result["not_blind"],
        "decision": decision,
        "cost": {"seconds_per_10000_texts": cost,
                 "how": f"feature extraction timed on {COST_SAMPLE} held-out texts on this machine (SmolLM2 up to layer "
                        f"{max(inst.LAYERS)}); the default instrument adds a few seconds per 10,000"},
        **{k: figures[k] for k in ("validation", "by_group", "pooled_auroc", "operating_point", "calibration",
                                   "failure_modes")},
        "changes": [],
    }


def render(card: dict[str, Any]) -> str:
    header = ["# Candidate 11 for the injection instrument: a SmolLM2 probe (`injection-lm`; not adopted, not shipped)", "",
              "Generated by `" + COMMAND + " --base v9 --out DIR` (DIR/card.json); candidate 11, decided by the rule in "
              "docs/instruments/preregistration/injection-lm.md.", "",
              f"**Cost.** {card['cost']['seconds_per_10000_texts']} s per 10,000 texts ({card['cost']['how']}).", "",
              "**Chosen on the training rows (out-of-fold F1).** layers: " + json.dumps(card["dev_choices"]["probe_layers_out_of_fold_f1"])
              + "; C: " + json.dumps(card["dev_choices"]["probe_c_out_of_fold_f1"]) + ".", ""]
    dec = card.get("decision")
    if dec:
        header += ["## The pre-registered decision (docs/instruments/preregistration/injection-lm.md)", "",
                   f"On {dec['kept']} texts of a fresh author ({dec['left_out']} left out as close to training or "
                   f"validation texts): adopted {dec['adopt']}.", "",
                   "| measure | default | injection-lm |", "| --- | --- | --- |"]
        for g in ("direct", "indirect", "benign_user", "benign_docs", "benign_system", "ordinary"):
            b, c = dec["base_rates"][g], dec["candidate"][g]
            header.append(f"| {g} flagged | {b['flagged']}/{b['n']} | {c['flagged']}/{c['n']} |")
        header += [f"| measure (attack recall minus look-alikes flagged) | {dec['base_rates']['measure']} | "
                   f"{dec['candidate']['measure']} |", "",
                   "Conditions: " + "; ".join(f"{k}: {v}" for k, v in dec["conditions"].items()) + ".", ""]
    header += ["## The authors that served earlier decisions (not blind)", "",
               "| author set | default measure | injection-lm measure | direct caught (default) | direct caught (lm) |",
               "| --- | --- | --- | --- | --- |"]
    for a, v in card["not_blind_authors"].items():
        header.append(f"| {a} | {v['default']['measure']} | {v['candidate']['measure']} | "
                      f"{v['default']['direct'][0]}/{v['default']['direct'][1]} | "
                      f"{v['candidate']['direct'][0]}/{v['candidate']['direct'][1]} |")
    header += ["", "The held-out tables below give the stack's rates; `by_group` in the JSON also has the default's "
               "(`default_rate`) on the same texts.", ""]
    return ti.render_doc(card, header)


NOT_BLIND = ("independent", "independent2", "independent3", "independent4", "independent5", "independent6",
             "independent7", "independent8")  # the held-out authors that had served a decision before candidate 11's


def design(x: Any, y: list[int], folds: list[int]) -> dict[str, Any]:
    """The probe's layers (of LAYER_CHOICES, at the middle C) and then its C (of PROBE_CS), by out-of-fold F1
    (at each candidate's F1-best threshold) on the probe's training rows."""
    from tunelens.safety.train_metrics import f1_best_threshold

    width = x.shape[1] // len(inst.LAYERS)
    mid = PROBE_CS[len(PROBE_CS) // 2]
    by_layers, oof = {}, {}
    for layers in LAYER_CHOICES:
        s = out_of_fold_probe(x[:, inst.layer_columns(layers, width)], y, folds, mid)
        by_layers[",".join(map(str, layers))] = round(f1_best_threshold([bool(v) for v in y], s)[1], 4)
        oof[(layers, mid)] = s
        print(f"probe layers {layers}, C {mid}: out-of-fold F1 {by_layers[','.join(map(str, layers))]}", flush=True)
    layers = max(LAYER_CHOICES, key=lambda l: by_layers[",".join(map(str, l))])
    by_c = {str(mid): by_layers[",".join(map(str, layers))]}
    for c in PROBE_CS:
        if c != mid:
            s = out_of_fold_probe(x[:, inst.layer_columns(layers, width)], y, folds, c)
            by_c[str(c)] = round(f1_best_threshold([bool(v) for v in y], s)[1], 4)
            oof[(layers, c)] = s
            print(f"probe layers {layers}, C {c}: out-of-fold F1 {by_c[str(c)]}", flush=True)
    c = max(PROBE_CS, key=lambda v: by_c[str(v)])
    return {"layers": list(layers), "c": c, "by_layers": by_layers, "by_c": by_c, "oof": oof[(layers, c)]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import argparse

    import numpy as np

    from tunelens.safety.instruments.injection import InjectionInstrument

    ap = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default="../shared/data", type=Path)
    ap.add_argument("--features-cache", type=Path, default=None, help="an .npz file that keeps the SmolLM2 features")
    ap.add_argument("--out", type=Path, default=None, help="the folder for the model, result.json and the card")
    ap.add_argument("--decision", type=Path, default=None,
                    help="the pre-registered decision's decision.json (benchmarks/injection_decision.py --lm), for the card")
    ap.add_argument("--base", choices=("shipped", "v9"), default="shipped",
                    help="the default detector it is stacked on: the shipped one, or version 9 trained aside with its "
                         "own training texts (candidate 11 as decided, once a later version ships)")
    ap.add_argument("--no-write", action="store_true", help="print the figures only")
    args = ap.parse_args(argv)
    if not args.out and not args.no_write:
        ap.error("give --out DIR (the candidate is not adopted, so nothing is written into the package) or --no-write")
    t0 = time.time()
    if args.base == "v9":
        import tempfile

        ti.TRAINING_AUTHOR_FILES = ti.V9_AUTHOR_FILES
        ti.BENIGN_WINDOWS = False  # version 9 had no benign windows ...
        ti.WIDE_VOCAB = False  # ... nor wide vocabularies
        aside = Path(args.out or tempfile.mkdtemp()) / "base.joblib"
        ti.train(args.data_dir, aside, card_path=None)
        default = InjectionInstrument(aside)
    else:
        default = InjectionInstrument()
    sets = ti.build_sets(args.data_dir)
    rows = probe_rows(sets)
    y = [r[2] for r in rows]
    heldout = [k for k in sets if not k.startswith("train:")]
    x_all = features_for([r[1] for r in rows] + [t for k in heldout for t in sets[k]["texts"]], args.features_cache)
    x = x_all[:len(rows)]
    folds = folds_of(len(rows))
    chosen = design(x, y, folds)
    p_default_oof = out_of_fold_default(sets, rows, folds)
    coef, intercept = stack_fit([p_default_oof, chosen["oof"]], y)
    print(f"stack: coef {coef}, intercept {intercept}", flush=True)

    cols = inst.layer_columns(chosen["layers"], x.shape[1] // len(inst.LAYERS))
    probe = fit_probe(x[:, cols], [bool(v) for v in y], chosen["c"])
    model = {"probe": probe["probe"], "scaler": probe["scaler"], "layers": chosen["layers"], "stack_coef": coef,
             "stack_intercept": intercept, "base_model": inst.BASE_MODEL}
    scores, base_scores, at = {}, {}, len(rows)
    for k in heldout:
        n = len(sets[k]["texts"])
        pp = probe_scores(probe, x_all[at:at + n][:, cols])
        at += n
        base_scores[k] = [r["score"] for r in default.score_texts(sets[k]["texts"])]
        scores[k] = [inst.stacked(model, [b, p]) for b, p in zip(base_scores[k], pp)]
    threshold, rule = ti.choose_threshold(sets, scores)
    model["threshold"] = threshold
    dev = {a: {"default": author_measures(sets, base_scores, default.threshold, a),
               "candidate": author_measures(sets, scores, threshold, a)} for a in NOT_BLIND}
    def rate(keys, sc, t):
        n = sum(len(sc[k]) for k in keys)
        return round(sum(s >= t for k in keys for s in sc[k]) / n, 4)

    shipped = {"benign user questions": ("test:alpaca", "test:gsm8k", "test:jbb_benign"),
               "benign system prompts and assistant turns": ("test:written_system_prompts", "test:hh_assistant")}
    result = {"design": {k: v for k, v in chosen.items() if k != "oof"}, "stack": {"coef": coef, "intercept": intercept},
              "threshold": threshold, "threshold_rule": rule, "rows": len(rows), "not_blind": dev,
              "not_blind_mean_measure": {w: round(float(np.mean([dev[a][w]["measure"] for a in NOT_BLIND])), 4)
                                         for w in ("default", "candidate")},
              "shipped_sets": {g: {"default": rate(ks, base_scores, default.threshold), "candidate": rate(ks, scores, threshold)}
                               for g, ks in shipped.items()},
              "seconds": round(time.time() - t0)}
    print(json.dumps({k: v for k, v in result.items() if k != "not_blind"}, indent=1))
    for a in NOT_BLIND:
        print(a, dev[a]["default"]["measure"], "->", dev[a]["candidate"]["measure"],
              "direct", dev[a]["default"]["direct"], "->", dev[a]["candidate"]["direct"])
    if args.out:
        import joblib

        held = [t for k in heldout if k.startswith("test:independent8") for t in sets[k]["texts"]]
        cost = seconds_per_10k(random.Random(SEED).sample(held, min(COST_SAMPLE, len(held))))
        decision = json.loads(args.decision.read_text(encoding="utf-8")) if args.decision else None
        version = 9 if args.base == "v9" else json.loads(ti.CARD.read_text(encoding="utf-8"))["version"]
        card = build_card(sets, rows, result, scores, base_scores, default.threshold, cost, decision, version)
        args.out.mkdir(parents=True, exist_ok=True)
        joblib.dump(model, args.out / "injection_lm.joblib", compress=3)
        (args.out / "result.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        (args.out / "card.json").write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        (args.out / "card.md").write_text(render(card), encoding="utf-8")
        print(f"wrote injection_lm.joblib, result.json, card.json and card.md in {args.out}", flush=True)
    return {"model": model, "result": result, "scores": scores, "base_scores": base_scores, "sets": sets}


if __name__ == "__main__":
    main()
