"""The shipped injection detector read on fresh authors, pooled (docs/instruments/preregistration/
injection-v10-pooled.md): a measurement, not a decision.

    D=src/tunelens/safety/data
    .venv/bin/python benchmarks/injection_pooled.py \
        --pooled $D/injection_independent_11.jsonl --pooled-name "author 21" \
        --pooled $D/injection_independent_12.jsonl --pooled-name "author 23" \
        --pooled $D/injection_independent_13.jsonl --pooled-name "author 24" \
        --pooled $D/injection_independent_14.jsonl --pooled-name "author 25" \
        --pooled $D/injection_independent_15.jsonl --pooled-name "author 26" \
        --beside $D/injection_independent_10.jsonl --beside-name "author 19" --out /tmp/pool

reproduces the reading of 2026-12-07 from the shipped (already vetted) sets. The reading itself gave authors 24-26's
full files (860 texts each) as ``--fresh``, so that they were vetted first.

Version 13's reading on authors 33-36 (docs/instruments/preregistration/injection-v13-pooled.md) is the same command
with ``--pooled`` $D/injection_independent_21.jsonl to _24.jsonl (``--pooled-name`` "author 33" to "author 36") and
``--beside`` _19.jsonl and _20.jsonl ("author 31", "author 32"); the reading itself gave authors 33-36's full files
(800 texts each) as ``--fresh``. Version 14's reading on authors 40-43 (injection-v14-pooled.md) is the same with
``--pooled`` _27.jsonl to _30.jsonl ("author 40" to "author 43") and ``--beside`` _25.jsonl and _26.jsonl ("author 38",
"author 39"). Version 14's reading of ordinary user traffic on authors 44-51 (injection-v14-ordinary.md) is
``--pooled`` _31.jsonl to _38.jsonl ("author 44" to "author 51"), no ``--beside``; the reading itself gave the
authors' full files (250 questions each) as ``--fresh`` (named "author_44" to "author_51"); its ordinary-question
target is in ``targets``, the plain harmful questions in ``groups``.

``--fresh`` files are vetted first against the shipped detector's training and validation texts (equal once
normalised, or sharing a run of SHINGLE words: left out, with the reason, in OUT/<name>_left_out.jsonl; the rest in
OUT/<name>_kept.jsonl), as every earlier author was. ``--pooled`` files are already vetted sets (the shipped
held-out files). ``--beside`` files are reported but not pooled (an author the detector was chosen on).

Every group in the files is also reported pooled (``groups``, each also split into English and not English where
rows give a ``lang``), and the flagged texts are listed per author (``flagged``).

For each target, the pooled rate with its Wilson 95% interval and each author's rate, and the pooled measure of the
decisions (attacks caught minus look-alikes flagged; condition 5 of injection-v14-tool-outputs.md); the verdict is "shown" when
the whole interval is on the target's side, "met as measured" when the point estimate is, else "not met". Prints one
JSON object and writes OUT/pooled.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import tunelens.safety.train_injection as ti
from tunelens.records import iter_jsonl_numbered
from tunelens.safety.instruments import Example
from tunelens.safety.instruments.injection import InjectionInstrument
from tunelens.safety.train_metrics import pooled_rate

def counts(flags: dict[str, list[bool]], groups: tuple[str, ...]) -> tuple[int, int]:
    hits = [f for g in groups for f in flags.get(g, [])]
    return sum(hits), len(hits)


def read(path: Path) -> list[dict]:
    """The rows of an author's JSONL file; a bad line stops the run with file:line and what is wrong."""
    rows = []
    try:
        for k, row in iter_jsonl_numbered(path):
            if not isinstance(row.get("text"), str) or not isinstance(row.get("group"), str):
                raise ValueError(f"{path}:{k}: a row needs a 'text' and a 'group'")
            rows.append(row)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for kind in ("pooled", "fresh", "beside"):
        ap.add_argument(f"--{kind}", action="append", default=[], type=Path)
        ap.add_argument(f"--{kind}-name", action="append", default=[])
    ap.add_argument("--data-dir", default="../shared/data", type=Path)
    ap.add_argument("--artifact", type=Path, default=None,
                    help="score with this detector (e.g. a candidate's OUT/candidate.joblib from injection_decision.py) "
                         "instead of the shipped one; --fresh files are still vetted against the shipped training data")
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args()
    for kind in ("pooled", "fresh", "beside"):
        if len(getattr(a, kind)) != len(getattr(a, f"{kind}_name")):
            ap.error(f"give one --{kind}-name per --{kind}")
    a.out.mkdir(parents=True, exist_ok=True)
    if a.artifact is not None and not a.artifact.is_file():
        ap.error(f"--artifact {a.artifact}: no such file")
    inst = InjectionInstrument(a.artifact) if a.artifact else InjectionInstrument()
    authors: dict[str, dict] = {}
    sets = ti.build_sets(a.data_dir) if a.fresh else {}
    for kind in ("pooled", "fresh", "beside"):
        for path, name in zip(getattr(a, kind), getattr(a, f"{kind}_name")):
            rows = read(path)
            left = 0
            if kind == "fresh":
                why = ti.seen_overlap([r["text"] for r in rows], sets)
                kept = [r for r, w in zip(rows, why) if w is None]
                gone = [{**r, "left_out": w} for r, w in zip(rows, why) if w is not None]
                slug = name.replace(" ", "_")
                for suffix, part in (("kept", kept), ("left_out", gone)):
                    (a.out / f"{slug}_{suffix}.jsonl").write_text(
                        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
                rows, left = kept, len(gone)
            scores = [v.score for v in inst.classify([Example(r["text"]) for r in rows])]
            flags: dict[str, list[bool]] = {}
            for r, s in zip(rows, scores):
                flags.setdefault(r["group"], []).append(s >= inst.threshold)
                # the same flag again under "<group>, English" / "<group>, not English" (rows that give a "lang")
                if isinstance(r.get("lang"), str):
                    flags.setdefault(f"{r['group']}, {'English' if r['lang'] == 'en' else 'not English'}",
                                     []).append(s >= inst.threshold)
            authors[name] = {"kind": kind, "file": str(path), "kept": len(rows), "left_out": left, "flags": flags,
                             "flagged": [{"group": r["group"], "id": r.get("id"), "score": round(s, 4), "text": r["text"]}
                                         for r, s in zip(rows, scores) if s >= inst.threshold]}

    pool = [n for n, v in authors.items() if v["kind"] != "beside"]
    result: dict = {"detector": str(a.artifact or "shipped"), "threshold": inst.threshold, "pool": pool,
                    "beside": [n for n, v in authors.items() if v["kind"] == "beside"],
                    "texts": {n: {"kept": v["kept"], "left_out": v["left_out"]} for n, v in authors.items()},
                    "targets": {}}
    for what, (groups, side, bar) in ti.BLIND_POOL_TARGETS.items():  # the card's targets, named as in the card
        per_author = {name: counts(v["flags"], groups) for name, v in authors.items()}
        pooled = pooled_rate({n: per_author[n] for n in pool}, side, bar)
        beside = {n: pooled_rate({n: per_author[n]})["by_source"][n] for n in result["beside"]}
        result["targets"][what] = {**pooled, "beside": beside}
    # every group the files hold (a target's group or not; with its English / not-English parts), pooled the same way
    all_groups = sorted({g for n in pool for g in authors[n]["flags"]})
    result["groups"] = {g: pooled_rate({n: counts(authors[n]["flags"], (g,)) for n in pool}) for g in all_groups}
    result["flagged"] = {n: authors[n]["flagged"] for n in authors}
    # the decisions' measure, pooled: attacks caught (direct and indirect) minus look-alikes flagged
    attacks = [counts(authors[n]["flags"], ("direct", "indirect")) for n in pool]
    looks = [counts(authors[n]["flags"], ("benign_user", "benign_docs", "benign_system")) for n in pool]
    k_a, n_a, k_l, n_l = sum(k for k, _ in attacks), sum(n for _, n in attacks), sum(k for k, _ in looks), sum(n for _, n in looks)
    if n_a and n_l:
        result["measure"] = round(k_a / n_a - k_l / n_l, 4)
    (a.out / "pooled.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
