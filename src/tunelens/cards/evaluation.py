"""The model card's verdicts and evaluation-based limitations, read from the run's ``summary.json``.

The run's report stage writes ``summary.json`` (tunelens.pipeline.summary: rows, guard metrics and
their status, what improved / regressed / could not be concluded) before the cards, so the card and
the report say the same thing. A run directory without it (an older run) gets no verdict section.
"""

from __future__ import annotations

import json
from typing import Any

from tunelens.cards.artifacts import RunArtifacts


def _summary(art: RunArtifacts) -> dict[str, Any]:
    path = art.run_dir / "summary.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}


def _num(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, (int, float)) and not isinstance(x, bool) else "-"


def _entry(e: Any) -> str:
    """A summary entry {value, ci} as "0.123 [0.100, 0.150]"."""
    if not isinstance(e, dict) or e.get("value") is None:
        return "-"
    ci = e.get("ci")
    return _num(e["value"]) + (f" [{_num(ci[0])}, {_num(ci[1])}]" if ci else "")


def verdict_markdown(art: RunArtifacts) -> str:
    """Guard status, the guard table, and what improved / regressed / could not be concluded."""
    s = _summary(art)
    if not s:
        return "_No run summary (summary.json): rerun `tunelens run` to get the verdicts._"
    status = s.get("status", "NOT CHECKED")
    lines = [f"**Guard metrics: {status}.** A guard regresses when tuned is worse than base and the paired 95% CI "
             "of the difference excludes 0."]
    if s.get("note"):
        lines.append(f"\n_{s['note']}._")
    gates = s.get("gates") or []
    if gates:
        lines += ["", "| guard | base | tuned | tuned - base [95% CI] | n | status |", "|---|---|---|---|---|---|"]
        for g in gates:
            ci = g.get("ci")
            delta = _num(g.get("delta")) + (f" [{_num(ci[0])}, {_num(ci[1])}]" if ci else "")
            lines.append(f"| {g['guard']} | {_num(g.get('base'))} | {_num(g.get('tuned'))} | {delta} | "
                         f"{g.get('n') if g.get('n') is not None else '-'} | {g['status']} |")
    targets = [t for t in s.get("targets") or [] if t["status"] != "not evaluated"]
    if targets:
        lines += ["", "Targets of the default run (docs/default-run.md in the tunelens repository):", "",
                  "| target | tuned - base [95% CI] | n | rule | status |", "|---|---|---|---|---|"]
        for t in targets:
            lines.append(f"| {t['target']} | {_num(t['delta'])} [{_num(t['ci'][0])}, {_num(t['ci'][1])}] | "
                         f"{t['n'] if t['n'] is not None else '-'} | {t['rule']} | {t['status']} |")
    rl = (s.get("rl") or {}).get("rows") or []
    if rl:
        lines += ["", f"**Reinforcement learning after SFT.** {s['rl'].get('note', '')}", "",
                  "| measure | base | sft | tuned (SFT + RL) | sft - base [95% CI] | tuned - sft [95% CI] | reading (RL) |",
                  "|---|---|---|---|---|---|---|"]
        for r in rl:
            lines.append(f"| {r['what']} | " + " | ".join(_entry(r.get(k)) for k in ("base", "sft", "tuned", "sft - base", "tuned - sft"))
                         + f" | {r['verdict']} |")
    v = s.get("verdicts") or {}
    for key, title in (("improved", "Improved (significant)"), ("regressed", "Regressed (significant)"),
                       ("not concluded", "Not concluded (CI includes 0, or too few items)")):
        items = v.get(key) or []
        lines += ["", f"**{title}:** " + ("none" if not items else "")]
        lines += [f"- {item}" for item in items]
    inst = [r for r in s.get("rows") or [] if r.get("instrument")]
    if inst:
        lines += ["", "Rates from safety instruments, with the instrument's measured error:"]
        for r in inst:
            i = r["instrument"]
            corrected = {k: v for k, v in (i.get("corrected") or {}).items() if v is not None}
            extra = ("; corrected " + ", ".join(f"{k} {_num(v)}" for k, v in corrected.items())) if corrected else ""
            lines.append(f"- {r['what']}: {i.get('name')}, {i.get('error')}{extra}")
    return "\n".join(lines)


def limitation_items(art: RunArtifacts) -> list[str]:
    """Limitations that follow from this run's evaluation results."""
    s = _summary(art)
    out: list[str] = []
    if not s:
        return out
    bad = [g["guard"] for g in s.get("gates") or [] if g.get("status") == "regressed"]
    if bad:
        out.append(f"The tuned model is significantly worse than its base on the guard metric(s) {', '.join(bad)} "
                   "(the run is marked REGRESSED); see the report's side-by-side examples.")
    unchecked = [g["guard"] for g in s.get("gates") or [] if g.get("status") == "not evaluated"]
    if unchecked:
        out.append(f"Guard metric(s) not evaluated in this run: {', '.join(unchecked)}.")
    rows = {r["source"].split(": ", 1)[-1]: r for r in s.get("rows") or []}
    over = rows.get("over_refusal/over_refusal_rate")
    if over and (over.get("tuned") or {}).get("value") is not None:
        out.append(f"It refuses {(over['tuned']['value']):.0%} of benign prompts that only sound harmful "
                   f"(base: {_num((over.get('base') or {}).get('value'))}); refusal is measured by an instrument "
                   "whose error is stated next to the rate.")
    unknown = sorted({r["what"] for r in s.get("rows") or []
                      if (r.get("instrument") or {}).get("error") == "instrument error unknown"})
    if unknown:
        out.append("For these rates the instrument's error is unknown, so the raw rate is shown uncorrected: "
                   + "; ".join(unknown) + ".")
    if "bbq/accuracy" in rows:
        out.append("BBQ covers 6 of its 11 categories here (Age, Disability status, Nationality, Physical appearance, "
                   "Religion, Sexual orientation); bias in the others (gender, race, SES, ...) is not measured.")
    if "truthfulqa_mc/mc2" in rows:
        out.append("TruthfulQA and BBQ are scored by log-probability of each answer after the chat template, "
                   "without the few-shot preamble of the lm-eval harness: compare with published figures only loosely.")
    missed = [t for t in s.get("targets") or [] if t.get("status") == "not met"]
    if missed:
        out.append("Targets of the default run not met here (docs/default-run.md says what was tried): "
                   + "; ".join(f"{t['target']} (measured tuned - base {_num(t['delta'])}, 95% CI "
                               f"[{_num(t['ci'][0])}, {_num(t['ci'][1])}]; rule: {t['rule']})" for t in missed) + ".")
    if s.get("quick"):
        out.append(s.get("note", "quick preset: wide CIs"))
    return out
