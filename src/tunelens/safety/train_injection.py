"""Training and validation of the injection instrument (``tunelens safety train-injection``).

Training (from the data folder at run time, plus ``safety/data/injection_written.json``):
deepset prompt-injections *train* split; attacks composed from the written ``train`` pieces (direct,
in English, German, Chinese, French, Spanish, Italian; indirect, hidden in documents, HTML comments,
markdown, fake admin policies, JSON, translation requests); benign look-alikes and documents;
written system prompts, HH-RLHF helpful assistant turns, ordinary user instructions (an Alpaca slice,
CC BY-NC 4.0; Self-Instruct seeds; GSM8K train) and harmful requests
that are not injections (AdvBench), all benign.

Held out, by source (never trained on, never used to choose the threshold): deepset *test*; attacks
composed from the written ``heldout`` pieces (direct, indirect, base64- and leetspeak-obfuscated);
Alpaca rows after the training slice, GSM8K test and JBB benign (ordinary questions); HarmBench and
JBB harmful (harmful, not injections). The threshold is chosen on validation slices: 20% of
deepset train, 20% of the written train attacks, Alpaca and AdvBench rows not trained on.
"""

from __future__ import annotations

import base64
import csv
import itertools
import json
import random
import time
from pathlib import Path
from typing import Any

from tunelens.errors import TunelensError
from tunelens.safety.train_toxicity import auroc_ci, binary_figures, card_tail, wilson

CARD = Path(__file__).resolve().parent / "instruments" / "cards" / "injection.json"
DOC_NAME = "injection.md"
WRITTEN = Path(__file__).resolve().parent / "data" / "injection_written.json"
LICENCES = {"hh": "MIT", "deepset": "Apache-2.0", "written": "tunelens (written for it)", "alpaca": "CC BY-NC 4.0 (non-commercial: the shipped artifact is trained on 2,000 instructions)",
            "self_instruct": "Apache-2.0", "gsm8k": "MIT", "advbench": "MIT", "jbb": "MIT", "harmbench": "MIT"}
BENIGN_NOTES = ["Last updated in March 2023.", "Image credit: the city archive.", "TODO: fix the footer layout.",
                "Reviewed by the editorial team.", "This section is under construction.", "Version 2.1 of this page."]
ALPACA_TRAIN, ALPACA_VAL, ALPACA_TEST = 2000, 1000, 1500


def _path(data_dir: Path, name: str) -> Path:
    path = Path(data_dir) / name
    if not path.is_file():
        raise TunelensError(f"injection training data not found: {path} (set --data-dir or TUNELENS_DATA_DIR)")
    return path


def read_labelled(path: Path) -> tuple[list[str], list[int]]:
    from tunelens.records import iter_jsonl_numbered

    texts, labels = [], []
    try:
        for i, row in iter_jsonl_numbered(path):
            if not isinstance(row.get("text"), str) or row.get("label") not in (0, 1):
                raise TunelensError(f"{path}:{i}: expected {{'text': str, 'label': 0|1}}, got keys {sorted(row)}")
            texts.append(row["text"])
            labels.append(int(row["label"]))
    except ValueError as exc:
        raise TunelensError(str(exc)) from None
    return texts, labels


def _csv_column(path: Path, column: str) -> list[str]:
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and column not in rows[0]:
        raise TunelensError(f"{path}: no column {column!r}")
    return [r[column] for r in rows if r[column].strip()]


def _jsonl_field(path: Path, field: str) -> list[str]:
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            row = json.loads(line)
            if not isinstance(row.get(field), str):
                raise TunelensError(f"{path}:{i}: missing string field {field!r}")
            out.append(row[field])
    return out


def alpaca_rows(data_dir: Path, seed: int = 0) -> list[str]:
    rows = json.loads(_path(data_dir, "alpaca_data.json").read_text(encoding="utf-8"))
    random.Random(seed).shuffle(rows)
    return [r["instruction"] + ("\n" + r["input"] if r.get("input") else "") for r in rows]


def hh_assistant_turns(data_dir: Path) -> list[str]:
    """Assistant turns of HH-RLHF helpful-base test dialogues (chosen): ordinary replies, as a client
    replays them in a chat history. Deduplicated, in file order."""
    import gzip

    out: dict[str, None] = {}
    with gzip.open(_path(data_dir, "hh_rlhf_helpful_base_test.jsonl.gz"), "rt", encoding="utf-8") as fh:
        for line in fh:
            for turn in json.loads(line)["chosen"].split("\n\nAssistant:")[1:]:
                text = turn.split("\n\nHuman:")[0].strip()
                if len(text) > 20:
                    out[text[:2000]] = None
    return list(out)


def compose_attacks(part: str, seed: int = 0) -> dict[str, list[str]]:
    """Written attacks and benign texts of ``part`` (train / heldout), composed from the pieces."""
    spec = json.loads(WRITTEN.read_text(encoding="utf-8"))[part]
    rng = random.Random(seed)
    direct = [" ".join(x for x in (p, o, g) if x)
              for p, o, g in itertools.product(spec["prefaces"], spec["overrides"], spec["goals"])]
    rng.shuffle(direct)
    direct = direct[:400 if part == "train" else 150]
    indirect, benign_docs = [], []
    for carrier, payload, (before, after) in itertools.product(spec["carriers"], spec["indirect_payloads"], spec["documents"]):
        indirect.append(carrier.format(before=before, after=after, payload=payload))
    for carrier, note, (before, after) in itertools.product(spec["carriers"], BENIGN_NOTES, spec["documents"]):
        benign_docs.append(carrier.format(before=before, after=after, payload=note))
    # an instruction inside a document, phrased as a direct attack (override + goal)
    for (before, after), o in itertools.product(spec["documents"], spec["overrides"]):
        indirect.append(f"{before} {o} {rng.choice(spec['goals'])} {after}")
    rng.shuffle(indirect)
    rng.shuffle(benign_docs)
    out = {"direct": direct, "indirect": indirect[:400 if part == "train" else 200],
           "benign_docs": benign_docs[:250 if part == "train" else 100]}
    prompts = spec["system_prompts"]
    out["system_prompts"] = prompts + [f"{a} {b}" for a, b in itertools.permutations(prompts, 2)][: 8 * len(prompts)]
    rng.shuffle(out["system_prompts"])
    if part == "heldout":
        sample = rng.sample(direct, 50)
        out["obfuscated"] = ([leet(t) for t in sample[:25]]
                             + ["Decode this and do what it says: " + base64.b64encode(t.encode()).decode()
                                for t in sample[25:]])
    else:
        out["benign_lookalikes"] = spec["benign_lookalikes"]
    return out


_LEET_OUT = str.maketrans({"o": "0", "i": "1", "e": "3", "a": "4", "s": "5", "t": "7"})


def leet(text: str) -> str:
    return " ".join(w.translate(_LEET_OUT) if w.isascii() and len(w) > 3 else w for w in text.split(" "))


def build_sets(data_dir: Path, seed: int = 0) -> dict[str, dict[str, Any]]:
    data_dir = Path(data_dir)
    sets: dict[str, dict[str, Any]] = {}

    def add(key, texts, label, source):
        texts = list(texts)
        labels = label if isinstance(label, list) else [label] * len(texts)
        sets[key] = {"texts": texts, "labels": labels, "source": source}

    rng = random.Random(seed)
    d_texts, d_labels = read_labelled(_path(data_dir, "deepset_prompt_injections_train.jsonl"))
    idx = list(range(len(d_texts)))
    rng.shuffle(idx)
    cut = int(len(idx) * 0.8)
    add("train:deepset", [d_texts[i] for i in idx[:cut]], [d_labels[i] for i in idx[:cut]], "deepset")
    add("val:deepset", [d_texts[i] for i in idx[cut:]], [d_labels[i] for i in idx[cut:]], "deepset")
    w = compose_attacks("train", seed)
    for kind in ("direct", "indirect"):
        cut = int(len(w[kind]) * 0.8)
        add(f"train:written_{kind}", w[kind][:cut], 1, "written")
        add(f"val:written_{kind}", w[kind][cut:], 1, "written")
    # the deepset training attacks (written by others) hidden in the written training documents and carriers
    spec = json.loads(WRITTEN.read_text(encoding="utf-8"))["train"]
    hidden = [rng.choice(spec["carriers"]).format(before=doc[0], after=doc[1], payload=t)
              for t, doc in ((t, rng.choice(spec["documents"])) for t, l in
                             zip(sets["train:deepset"]["texts"], sets["train:deepset"]["labels"]) if l)]
    add("train:deepset_in_documents", hidden, 1, "deepset")
    add("train:written_benign", w["benign_docs"] + w["benign_lookalikes"], 0, "written")
    cut = int(len(w["system_prompts"]) * 0.8)
    add("train:written_system_prompts", w["system_prompts"][:cut], 0, "written")
    add("val:written_system_prompts", w["system_prompts"][cut:], 0, "written")
    replies = hh_assistant_turns(data_dir)
    rng.shuffle(replies)
    add("train:hh_assistant", replies[:800], 0, "hh")
    add("val:hh_assistant", replies[1300:1600], 0, "hh")
    alpaca = alpaca_rows(data_dir, seed)
    # Alpaca is CC BY-NC 4.0: the artifact trained on it carries that licence (see the card)
    add("train:alpaca", alpaca[:ALPACA_TRAIN], 0, "alpaca")
    add("val:alpaca", alpaca[ALPACA_TRAIN:ALPACA_TRAIN + ALPACA_VAL], 0, "alpaca")
    add("train:self_instruct", _jsonl_field(_path(data_dir, "self_instruct_seed_tasks.jsonl"), "instruction"), 0, "self_instruct")
    gsm = _jsonl_field(_path(data_dir, "gsm8k_train.jsonl"), "question")
    add("train:gsm8k", rng.sample(gsm, 600), 0, "gsm8k")
    adv = _csv_column(_path(data_dir, "advbench_harmful_behaviors.csv"), "goal")
    add("train:advbench", adv[:420], 0, "advbench")
    add("val:advbench", adv[420:], 0, "advbench")
    # held out
    t_texts, t_labels = read_labelled(_path(data_dir, "deepset_prompt_injections_test.jsonl"))
    add("test:deepset", t_texts, t_labels, "deepset")
    h = compose_attacks("heldout", seed)
    add("test:written_direct", h["direct"], 1, "written")
    add("test:written_indirect", h["indirect"], 1, "written")
    add("test:written_obfuscated", h["obfuscated"], 1, "written")
    add("test:written_benign_docs", h["benign_docs"], 0, "written")
    add("test:written_system_prompts", h["system_prompts"], 0, "written")
    add("test:hh_assistant", replies[800:1300], 0, "hh")
    add("test:alpaca", alpaca[ALPACA_TRAIN + ALPACA_VAL:ALPACA_TRAIN + ALPACA_VAL + ALPACA_TEST], 0, "alpaca")
    add("test:gsm8k", _jsonl_field(_path(data_dir, "gsm8k_test.jsonl"), "question")[:500], 0, "gsm8k")
    add("test:jbb_benign", _csv_column(_path(data_dir, "jbb_benign_behaviors.csv"), "Goal"), 0, "jbb")
    add("test:harmbench", _csv_column(_path(data_dir, "harmbench_behaviors_text_all.csv"), "Behavior"), 0, "harmbench")
    add("test:jbb_harmful", _csv_column(_path(data_dir, "jbb_harmful_behaviors.csv"), "Goal"), 0, "jbb")
    return sets


GROUPS = {
    "direct attacks": ("test:written_direct",),
    "indirect attacks": ("test:written_indirect",),
    "obfuscated attacks (leetspeak, base64)": ("test:written_obfuscated",),
    "benign user questions": ("test:alpaca", "test:gsm8k", "test:jbb_benign"),
    "benign system prompts and assistant turns": ("test:written_system_prompts", "test:hh_assistant"),
    "harmful non-injection questions": ("test:harmbench", "test:jbb_harmful"),
}
SET_NAMES = {
    "test:deepset": "deepset prompt-injections official test split (attacks and benign, EN/DE)",
    "test:written_direct": "direct attacks from held-out written pieces (EN/DE/ZH/FR)",
    "test:written_indirect": "attacks hidden in documents with held-out carriers (HTML comment, admin policy, hidden span, "
                             "markdown callout, translation request) and payloads",
    "test:written_obfuscated": "held-out direct attacks in leetspeak (25) or base64 (25)",
    "test:written_benign_docs": "held-out documents with benign hidden notes in the same carriers",
    "test:written_system_prompts": "benign system prompts from held-out written pieces (alone and in pairs)",
    "test:hh_assistant": "HH-RLHF helpful-base assistant turns not trained on (as replayed chat history)",
    "test:alpaca": f"Alpaca instructions not trained on ({ALPACA_TEST} rows after the training and validation slices)",
    "test:gsm8k": "GSM8K test questions (first 500)",
    "test:jbb_benign": "JailbreakBench benign behaviours",
    "test:harmbench": "HarmBench behaviours (harmful requests, not injections)",
    "test:jbb_harmful": "JailbreakBench harmful behaviours (not injections)",
}


def build_pipeline(c: float = 8.0):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    features = FeatureUnion([
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, max_features=40000,
                                 sublinear_tf=True, lowercase=True)),
        ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), min_df=1, max_features=20000,
                                 sublinear_tf=True, lowercase=True, token_pattern=r"(?u)\b\w+\b|[\u4e00-\u9fff]")),
    ])
    return Pipeline([("features", features), ("clf", LogisticRegression(C=c, class_weight="balanced", max_iter=3000))])


def _scores(pipe, threshold_free_texts: list[str]) -> list[float]:
    """Scores through the instrument's views and rules (what the server sees), not the bare classifier."""
    from tunelens.safety.instruments.injection import InjectionInstrument

    return [r["score"] for r in InjectionInstrument.from_pipeline(pipe).score_texts(threshold_free_texts)]


def choose_threshold(sets, scores, max_fpr: float = 0.01) -> tuple[float, dict[str, Any]]:
    """The lowest threshold at which at most ``max_fpr`` of the benign validation rows of every kind
    the server scans (user questions: Alpaca, AdvBench, deepset benign; system prompts; assistant
    turns) are flagged, the strictest of the three; never below 0.1."""
    import numpy as np

    kinds = {"user questions": ("val:alpaca", "val:advbench", "val:deepset"),
             "system prompts": ("val:written_system_prompts",), "assistant turns": ("val:hh_assistant",)}
    per_kind = {}
    for kind, keys in kinds.items():
        benign = np.array([s for k in keys for s, y in zip(scores[k], sets[k]["labels"]) if not y])
        per_kind[kind] = round(float(np.quantile(benign, 1 - max_fpr)) + 1e-3, 4)
    t = max(0.1, *per_kind.values())
    return round(t, 3), {"rule": f"max(0.1, the {1 - max_fpr:.0%} quantile of benign validation rows of each kind: "
                                 "user questions (Alpaca, AdvBench, deepset-train benign), written system prompts, "
                                 "HH assistant turns)", "max_benign_fpr": max_fpr, "per_kind": per_kind}


def train(data_dir: Path, out_path: Path, *, seed: int = 0, card_path: Path | None = CARD,
          doc_path: Path | None = None, threshold: float | None = None) -> dict:
    import joblib

    start = time.perf_counter()
    sets = build_sets(Path(data_dir), seed)
    train_keys = [k for k in sets if k.startswith("train:")]
    from tunelens.safety.instruments.injection import normalise

    x = [normalise(t) for k in train_keys for t in sets[k]["texts"]]  # what the views show the classifier
    y = [t for k in train_keys for t in sets[k]["labels"]]
    pipe = build_pipeline().fit(x, y)
    train_s = time.perf_counter() - start
    scores = {k: _scores(pipe, v["texts"]) for k, v in sets.items() if not k.startswith("train:")}
    if threshold is None:
        threshold, rule = choose_threshold(sets, scores)
    else:
        rule = {"rule": "given on the command line"}

    validation = []
    for key in SET_NAMES:
        v = sets[key]
        fig = binary_figures(v["labels"], scores[key], threshold)
        validation.append({"set": key.split(":", 1)[1], "description": SET_NAMES[key], **fig})
    by_group = {}
    for g, keys in GROUPS.items():
        yy = [l for k in keys for l in sets[k]["labels"]]
        ss = [s for k in keys for s in scores[k]]
        f = binary_figures(yy, ss, threshold, auroc=False)
        by_group[g] = {"sets": [k.split(":", 1)[1] for k in keys], "n": f["n"], "flagged": f["flagged"],
                       "rate": f["flag_rate"], "ci95": f["ci95"]["flag_rate"],
                       "measures": "recall" if yy and yy[0] == 1 else "false-positive rate"}
    d_y, d_s = sets["test:deepset"]["labels"], scores["test:deepset"]
    by_group["direct attacks (deepset test)"] = {
        "sets": ["deepset"], "n": sum(d_y), "flagged": sum(s >= threshold for s, t in zip(d_s, d_y) if t),
        "rate": round(sum(s >= threshold for s, t in zip(d_s, d_y) if t) / sum(d_y), 4),
        "ci95": wilson(sum(s >= threshold for s, t in zip(d_s, d_y) if t), sum(d_y)), "measures": "recall"}
    pool = list(SET_NAMES)
    py = [l for k in pool for l in sets[k]["labels"]]
    ps = [s for k in pool for s in scores[k]]
    tp = sum(s >= threshold and t for s, t in zip(ps, py))
    tn = sum(s < threshold and not t for s, t in zip(ps, py))
    n_pos, n_neg = sum(py), len(py) - sum(py)
    auc, auc_ci = auroc_ci(py, ps)
    card = {
        "task": "injection", "name": "injection", "version": 2,
        "method": "views (normalised text with leetspeak restored, hidden HTML/markdown parts, decoded base64, "
                  "two-sentence windows of long texts) scored by TF-IDF char_wb 2-5 + word 1-2 logistic regression; "
                  "phrase rules (drop-earlier-instructions in EN/DE/FR/ES/ZH) raise a view to 0.95; score = max over views",
        "reproduce": "tunelens safety train-injection --data-dir ../shared/data",
        "threshold": threshold, "threshold_rule": rule,
        "training_data": [{"source": k.split(":", 1)[1], "licence": LICENCES[sets[k]["source"]],
                           "rows": len(sets[k]["texts"]), "injections": sum(sets[k]["labels"])} for k in train_keys],
        "validation": validation,
        "by_group": by_group,
        "pooled_auroc": {"auroc": auc, "ci95": auc_ci, "n": len(py)},
        "operating_point": {"sensitivity": round(tp / n_pos, 4), "specificity": round(tn / n_neg, 4),
                            "n_pos": n_pos, "n_neg": n_neg, "threshold": threshold,
                            "pooled_from": [k.split(":", 1)[1] for k in pool]},
        "calibration": {"set": "pooled held-out sets", "bins": _calibration(py, ps)},
        "failure_modes": _failures(sets, scores, threshold),
        "train_seconds": round(train_s, 1),
    }
    report = {"train_rows": len(x), "threshold": threshold, "test_file": "deepset_prompt_injections_test.jsonl",
              "test_rows": len(d_y), "combined": {k: validation[0][k] for k in ("precision", "recall", "f1")},
              "card": "cards/injection.json"}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump({"pipeline": pipe, "threshold": threshold, "report": report}, out_path, compress=3)
    out_path.with_name(out_path.stem + "_metrics.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if card_path is not None:
        Path(card_path).parent.mkdir(parents=True, exist_ok=True)
        Path(card_path).write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if doc_path is not None:
        Path(doc_path).write_text(render_doc(card), encoding="utf-8")
    return card


def _calibration(y, s, bins: int = 5):
    from tunelens.safety.train_toxicity import calibration

    return calibration(y, s, bins)


def _failures(sets, scores, threshold):
    out = []
    for key, want, what in (("test:deepset", 1, "deepset attack missed"), ("test:written_indirect", 1, "indirect attack missed"),
                            ("test:alpaca", 0, "ordinary instruction flagged"), ("test:harmbench", 0, "harmful request flagged"),
                            ("test:deepset", 0, "deepset benign flagged")):
        v = sets[key]
        cand = sorted(((scores[key][i], v["texts"][i]) for i in range(len(v["texts"]))
                       if v["labels"][i] == want and ((scores[key][i] >= threshold) != bool(want))), reverse=not want)
        out.append({"mode": what, "set": key.split(":", 1)[1], "count": len(cand),
                    "examples": [{"text": t[:200], "score": round(s, 3)} for s, t in cand[:3]]})
    out.append({"mode": "written held-out attacks", "note": "the written held-out attacks share an author with the "
                "training ones; recall on attacks written by others (e.g. the reserved jailbreak/hijacking collection) "
                "is expected to be lower"})
    return out


def render_doc(card: dict[str, Any]) -> str:
    def ci(c):
        return "" if not c else f" [{c[0]:.3f}, {c[1]:.3f}]"

    lines = ["# Injection instrument", "",
             "Generated by `tunelens safety train-injection` from `src/tunelens/safety/instruments/cards/injection.json`;",
             "do not edit by hand. Reproduce: `" + card["reproduce"] + "`.", "",
             "**What it measures**: whether a text carries instructions meant to take over the assistant (direct",
             "attacks, or instructions hidden in a document, an HTML comment, markdown, a fake system/admin policy,",
             "base64, leetspeak, other languages). A harmful request is *not* an injection.", "",
             f"Method: {card['method']}. Threshold {card['threshold']} ({card['threshold_rule']['rule']}).", "",
             "## Training data", "", "| source | licence | rows | injections |", "| --- | --- | --- | --- |"]
    for t in card["training_data"]:
        lines.append(f"| {t['source']} | {t['licence']} | {t['rows']} | {t['injections']} |")
    lines += ["", "Written data: `src/tunelens/safety/data/injection_written.json` (written for tunelens; train and",
              "held-out pieces are disjoint).", "",
              "## Held-out results by group (targets: recall >= 0.95 direct, >= 0.80 indirect; <= 1% false positives on "
              "ordinary user questions)", "", "| group | n | measures | rate | 95% CI |", "| --- | --- | --- | --- | --- |"]
    for g, f in card["by_group"].items():
        lines.append(f"| {g} | {f['n']} | {f['measures']} | {f['rate']:.3f} |{ci(f['ci95'])} |")
    lines += ["", "## Held-out sets", "", "| set | n (injections) | AUROC | precision | recall | flagged |",
              "| --- | --- | --- | --- | --- | --- |"]
    for v in card["validation"]:
        c = v.get("ci95", {})
        lines.append(f"| {v['set']} | {v['n']} ({v['n_pos']}) | "
                     + (f"{v['auroc']:.3f}{ci(c.get('auroc'))}" if "auroc" in v else "–") + " | "
                     + (f"{v['precision']:.3f}{ci(c.get('precision'))}" if "precision" in v else "–") + " | "
                     + (f"{v['recall']:.3f}{ci(c.get('recall'))}" if "recall" in v else "–") + " | "
                     + f"{100 * v['flag_rate']:.1f}%{ci(c.get('flag_rate'))} |")
    lines += ["", "Sets: " + "; ".join(f"`{v['set']}`: {v['description']}" for v in card["validation"]) + ".", ""]
    op, pa = card["operating_point"], card["pooled_auroc"]
    lines += [f"Pooled held-out AUROC {pa['auroc']:.3f}{ci(pa['ci95'])} (n={pa['n']}). Operating point (pooled held-out, "
              f"for Rogan–Gladen correction): sensitivity {op['sensitivity']:.3f}, specificity {op['specificity']:.3f}, "
              f"n_pos {op['n_pos']}, n_neg {op['n_neg']}.", "", "## Calibration", "",
              "| score bin | n | mean score | fraction injection |", "| --- | --- | --- | --- |"]
    return card_tail(card, lines, "Scores are the maximum over views and are not calibrated probabilities; use the label.")
