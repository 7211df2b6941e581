"""The PII redactor measured on the hand-labelled set in tests/data/pii_eval (README there).

A labelled value counts as redacted when every letter and digit of it lies inside a detected span
(of any type: what matters is that it does not survive); a detection that overlaps no labelled
value is a false redaction. The figures in docs/instruments/pii.md come from

    .venv/bin/python tests/test_data_pii_eval.py
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tunelens.safety.instruments.correction import wilson_interval
from tunelens.safety.pii import DEFAULT_TYPES, PII_TYPES, find_pii

DATA = Path(__file__).resolve().parent / "data" / "pii_eval"


def evaluate(split: str, types=PII_TYPES) -> dict:
    rows = [json.loads(line) for line in (DATA / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]
    found, total, typed = Counter(), Counter(), Counter()
    misses, false_in_pii, false_in_negatives, negatives = [], [], [], 0
    for row in rows:
        text = row["text"]
        entities = find_pii(text, types)
        covered = {i for e in entities for i in range(e.start, e.end)}
        for gold in row["entities"]:
            if gold["type"] not in types:
                continue
            total[gold["type"]] += 1
            ok = all(i in covered for i in range(gold["start"], gold["end"]) if text[i].isalnum())
            found[gold["type"]] += ok
            typed[gold["type"]] += ok and any(e.type == gold["type"] and e.start < gold["end"] and gold["start"] < e.end
                                              for e in entities)
            if not ok:
                misses.append((row["id"], gold["type"], gold["value"]))
        negatives += row["kind"] == "tricky_non_pii"
        for e in entities:
            if not any(e.start < g["end"] and g["start"] < e.end for g in row["entities"]):
                hit = (row["id"], e.type, text[e.start:e.end])
                (false_in_negatives if row["kind"] == "tricky_non_pii" else false_in_pii).append(hit)
    return {"found": found, "total": total, "typed": typed, "misses": misses, "negatives": negatives,
            "false_in_negatives": false_in_negatives, "false_in_pii": false_in_pii,
            "negatives_with_a_false_redaction": len({h[0] for h in false_in_negatives})}


def _default_types_recall(result: dict) -> float:
    found = sum(result["found"][t] for t in DEFAULT_TYPES)
    total = sum(result["total"][t] for t in DEFAULT_TYPES)
    return found / total


@pytest.mark.parametrize("split", ["dev", "heldout", "heldout2"])
def test_recall_of_the_default_types_and_false_redactions(split):
    result = evaluate(split)
    assert _default_types_recall(result) >= 0.95, result["misses"]
    assert result["negatives_with_a_false_redaction"] <= 1, result["false_in_negatives"]
    assert len(result["false_in_pii"]) <= 1, result["false_in_pii"]


def test_each_type_is_found_in_most_of_its_values():
    for split in ("dev", "heldout", "heldout2"):
        result = evaluate(split)
        for kind, n in result["total"].items():
            assert result["found"][kind] / n >= 0.75, (split, kind, result["misses"])


def test_person_is_off_by_default():
    result = evaluate("dev", DEFAULT_TYPES)
    assert "PERSON" not in result["total"]
    text = "Maria Garcia called."
    assert find_pii(text) == [] and [e.type for e in find_pii(text, ["PERSON"])] == ["PERSON"]


def _table(split: str) -> None:
    result = evaluate(split)
    print(f"\n{split}: {sum(result['total'].values())} labelled values, {result['negatives']} tricky non-PII strings")
    print(f"{'type':12} {'found':>7} {'recall':>7}  95% CI (Wilson)   right type")
    for kind in PII_TYPES:
        n = result["total"][kind]
        if not n:
            continue
        k = result["found"][kind]
        lo, hi = wilson_interval(k, n)
        print(f"{kind:12} {k:>3}/{n:<3} {k / n:7.2f}  [{lo:.2f}, {hi:.2f}]       {result['typed'][kind]}/{n}")
    found = sum(result["found"][t] for t in DEFAULT_TYPES)
    total = sum(result["total"][t] for t in DEFAULT_TYPES)
    lo, hi = wilson_interval(found, total)
    print(f"{'default types':12} {found:>3}/{total:<3} {found / total:7.2f}  [{lo:.2f}, {hi:.2f}]")
    print(f"false redactions: {result['negatives_with_a_false_redaction']} of {result['negatives']} tricky strings "
          f"{result['false_in_negatives']}; {len(result['false_in_pii'])} beside labelled values {result['false_in_pii']}")
    print(f"misses: {result['misses']}")


FIRST_RUNS = {  # each held-out half's figures the first time it was run (before the fixes it prompted)
    "heldout": {"default_types_found": 43, "default_types_total": 44, "false_redactions": 0, "negatives": 40,
                "misses": ["ADDRESS '5 avenue des Champs-Élysées' (the address gate lacked 'avenue')"]},
    "heldout2": {"default_types_found": 54, "default_types_total": 59, "false_redactions": 2, "negatives": 39,
                 "misses": ["EMAIL with an apostrophe", "CREDIT_CARD Diners 4-6-4", "SECRET password with '&'",
                            "SECRET client_secret with '~'", "ADDRESS \"9 Queen's Road\""],
                 "false": ["IP '4.2.1.3' after a section sign", "IP '0.0.0.0'"]},
}


def card() -> dict:
    """cards/pii.json: the figures of every split, as measured now, and the held-out first runs."""
    splits = {}
    for split in ("dev", "heldout", "heldout2"):
        result = evaluate(split)
        by_type = {}
        for kind in PII_TYPES:
            n, k = result["total"][kind], result["found"][kind]
            if n:
                lo, hi = wilson_interval(k, n)
                by_type[kind] = {"found": k, "n": n, "recall": round(k / n, 4), "ci95": [round(lo, 4), round(hi, 4)]}
        found = sum(result["found"][t] for t in DEFAULT_TYPES)
        total = sum(result["total"][t] for t in DEFAULT_TYPES)
        lo, hi = wilson_interval(found, total)
        splits[split] = {"by_type": by_type, "default_types": {"found": found, "n": total, "recall": round(found / total, 4),
                                                              "ci95": [round(lo, 4), round(hi, 4)]},
                         "tricky_non_pii": result["negatives"],
                         "false_redactions": [list(h) for h in result["false_in_negatives"]],
                         "false_beside_labelled_values": [list(h) for h in result["false_in_pii"]],
                         "misses": [list(m) for m in result["misses"]]}
    return {"task": "pii", "name": "pii", "version": 1,
            "method": "regular expressions with checksums (Luhn, mod-97, ipaddress) and context words; PERSON from a "
                      "given-names list + capitalised surname or a courtesy title; no model",
            "types": list(PII_TYPES), "default_types": list(DEFAULT_TYPES),
            "evaluation_set": "tests/data/pii_eval (hand-written, README there)",
            "reproduce": ".venv/bin/python tests/test_data_pii_eval.py --card src/tunelens/safety/instruments/cards/pii.json",
            "splits": splits, "first_runs_of_held_out_halves": FIRST_RUNS,
            "person_precision": {"eval_set_all_splits": "16 of 17 detections were person names (the miss-labelled one: "
                                                        "'Martin Luther King' in 'Martin Luther King Jr. Day')",
                                 "alpaca_sample": "38 of 40 random PERSON detections in 8,000 Alpaca records were person "
                                                  "names (before the two fixes they prompted: 'Notre-Dame Cathedral', "
                                                  "'John Im'); almost all were public figures or fictional people"}}


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "--card":
        Path(sys.argv[2]).write_text(json.dumps(card(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    for split in ("dev", "heldout", "heldout2"):
        _table(split)


def test_the_shipped_card_holds_the_current_figures():
    shipped = json.loads((Path(__file__).resolve().parents[1] / "src" / "tunelens" / "safety" / "instruments" / "cards"
                          / "pii.json").read_text(encoding="utf-8"))
    assert shipped == json.loads(json.dumps(card(), ensure_ascii=False))
