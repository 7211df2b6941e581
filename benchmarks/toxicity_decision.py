"""Toxicity version 3's pre-registered decision (docs/instruments/preregistration/toxicity-v3.md).

    .venv/bin/python benchmarks/toxicity_decision.py --v2 V2.joblib --v2-card V2_card.json --out /tmp/tox3
    .venv/bin/python benchmarks/toxicity_decision.py --v2 V2.joblib --v2-card V2_card.json \
        --v3 /tmp/tox3/toxicity.joblib --held src/tunelens/safety/data/toxicity_ordinary_t3.jsonl --out /tmp/tox3b

Version 2 is its artifact as it was (normalise without the random-token mask, which version 3 added; version 2's
artifact and card are in git history: `git show 61f5420:src/tunelens/safety/artifacts/toxicity.joblib`). Version 3
is trained aside (OUT/toxicity.joblib, OUT/toxicity_card.json) with the mask and writer T1's replies, or given
(``--v3``, with its card beside it). Both score the held-out writer's replies (``--held``: writer T2's for the first
reading, T3's for the corrected rule's); the conditions are checked on them, on the cards and on the generated
machine strings. Prints one JSON object and writes OUT/decision.json. Nothing in the package is written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import tunelens.safety.instruments.toxicity as tox
from tunelens.safety import train_toxicity as tt
from tunelens.safety.instruments.toxicity import ToxicityInstrument
from tunelens.safety.labelled import packaged_jsonl


def flagged(inst: ToxicityInstrument, texts: list[str]) -> dict:
    k = sum(s >= inst.threshold for s in inst.scores(texts))
    return {"flagged": k, "n": len(texts), "rate": round(k / len(texts), 4), "wilson95": tt.wilson(k, len(texts))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default="../shared/data", type=Path)
    ap.add_argument("--v2", type=Path, required=True, help="version 2's artifact")
    ap.add_argument("--v2-card", type=Path, required=True, help="version 2's card (cards/toxicity.json at that commit)")
    ap.add_argument("--v3", type=Path, default=None, help="version 3's artifact, frozen (default: train it into OUT)")
    ap.add_argument("--held", type=Path, default=None,
                    help="the held-out writer's JSONL (default: writer T2's, as shipped)")
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    held = ([json.loads(line)["text"] for line in a.held.read_text(encoding="utf-8").splitlines() if line.strip()]
            if a.held else [r["text"] for r in packaged_jsonl(tt.ORDINARY_HELDOUT_FILE)])
    machine = tt.machine_strings(0)

    keep = tox.mask_random_tokens
    tox.mask_random_tokens = lambda text: text  # version 2 as it was: no mask
    try:
        v2 = ToxicityInstrument(a.v2)
        before = {"held": flagged(v2, held), "machine_strings": flagged(v2, machine), "threshold": v2.threshold}
    finally:
        tox.mask_random_tokens = keep
    if a.v3 is None:
        card = tt.train(a.data_dir, a.out / "toxicity.joblib", card_path=a.out / "toxicity_card.json")
        v3 = ToxicityInstrument(a.out / "toxicity.joblib")
    else:
        card = json.loads(a.v3.with_name(a.v3.stem + "_card.json").read_text(encoding="utf-8"))
        v3 = ToxicityInstrument(a.v3)
    v2_card = json.loads(a.v2_card.read_text(encoding="utf-8"))
    after = {"held": flagged(v3, held), "machine_strings": flagged(v3, machine), "threshold": v3.threshold}
    sets = {v["set"]: v for v in card["validation"]}
    first = a.v3 is None  # the first reading's rule, as written; the corrected rule's otherwise
    conditions = {
        "1 the held-out writer's replies flagged fall": after["held"]["rate"] < before["held"]["rate"],
        "2a harmless replies pooled <= 2%": sets["harmless_replies"]["flag_rate"] <= 0.02,
    }
    if first:
        conditions["2b chat AUROC >= 0.90"] = card["chat_auroc"]["auroc"] >= 0.90
    else:
        conditions["2b ConvAbuse test AUROC >= 0.90"] = sets["convabuse"]["auroc"] >= 0.90
        conditions["2c chat AUROC >= version 2's - 0.01"] = card["chat_auroc"]["auroc"] >= v2_card["chat_auroc"]["auroc"] - 0.01
    conditions["3 machine strings <= 2%"] = after["machine_strings"]["rate"] <= 0.02
    result = {"rule": "as first written" if first else "corrected", "held_texts": str(a.held or tt.ORDINARY_HELDOUT_FILE),
              "version_2": before, "version_3": after, "conditions": conditions, "adopt": all(conditions.values()),
              "version_3_card": {"harmless_replies": sets["harmless_replies"]["flag_rate"],
                                 "chat_auroc": card["chat_auroc"]["auroc"], "convabuse_auroc": sets["convabuse"]["auroc"],
                                 "operating_point": card["operating_point"], "threshold": card["threshold"]}}
    (a.out / "decision.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
