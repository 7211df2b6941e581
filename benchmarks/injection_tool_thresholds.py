"""What `guardrails.injection.tool_threshold` trades, measured: the shipped injection detector's false alarms on benign
tool outputs and documents, and the attacks hidden in them that it catches, at several thresholds for tool turns and
documents (docs/serving.md quotes the table).

    .venv/bin/python benchmarks/injection_tool_thresholds.py

Read on held-out authors the detector was never trained on: author 28 (tool and API outputs; read to decide version
11), authors 29 and 30 (documents, emails, tickets and tool outputs; read to decide version 12) and authors 31 and 32
(the same kinds; read to decide version 13), authors 38 and 39 (the same kinds; read to decide version 14), and on the
400 generated tool outputs. No threshold of the detector is
chosen here: the server's default stays the validated one.
Prints one JSON object: per threshold, per set, flagged k/n with a Wilson 95% interval."""

from __future__ import annotations

import argparse
import json

import tunelens.safety.train_injection as ti
from tunelens.safety.instruments.injection import InjectionInstrument
from tunelens.safety.train_metrics import wilson

SETS = {  # name -> (file or "generated", group)
    "benign tool outputs, author 28": ("injection_independent_16.jsonl", "benign_docs"),
    "benign documents and tool outputs, authors 29-30": (("injection_independent_17.jsonl",
                                                          "injection_independent_18.jsonl"), "benign_docs"),
    "benign documents and tool outputs, authors 31-32": (("injection_independent_19.jsonl",
                                                          "injection_independent_20.jsonl"), "benign_docs"),
    "benign documents and tool outputs, authors 38-39": (("injection_independent_25.jsonl",
                                                          "injection_independent_26.jsonl"), "benign_docs"),
    "benign tool outputs, generated": ("generated", None),
    "attacks hidden in tool outputs, author 28": ("injection_independent_16.jsonl", "indirect"),
    "attacks hidden in documents and tool outputs, authors 29-30": (("injection_independent_17.jsonl",
                                                                     "injection_independent_18.jsonl"), "indirect"),
    "attacks hidden in documents and tool outputs, authors 31-32": (("injection_independent_19.jsonl",
                                                                     "injection_independent_20.jsonl"), "indirect"),
    "attacks hidden in documents and tool outputs, authors 38-39": (("injection_independent_25.jsonl",
                                                                     "injection_independent_26.jsonl"), "indirect"),
}


def texts_of(files, group) -> list[str]:
    if files == "generated":
        return ti.benign_tool_outputs(0)
    files = (files,) if isinstance(files, str) else files
    return [r["text"] for f in files for r in ti.independent_rows(f, ti.INDEPENDENT_GROUPS + ("ordinary",))
            if r["group"] == group]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--thresholds", default="shipped,0.70,0.75,0.80,0.85,0.90",
                    help="comma-separated; 'shipped' is the detector's validated threshold")
    a = ap.parse_args()
    inst = InjectionInstrument()
    thresholds = [inst.threshold if t == "shipped" else float(t) for t in a.thresholds.split(",")]
    scores = {name: [r["score"] for r in inst.score_texts(texts_of(*spec))] for name, spec in SETS.items()}
    out = {"detector_threshold": inst.threshold, "rows": []}
    for t in thresholds:
        row = {"threshold": t}
        for name, s in scores.items():
            k = sum(x >= t for x in s)
            row[name] = {"k": k, "n": len(s), "rate": round(k / len(s), 4), "wilson95": wilson(k, len(s))}
        out["rows"].append(row)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
