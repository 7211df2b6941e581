"""Training mixes from real public data: instruction data, harmful prompts with refusals, and
benign look-alikes with real answers, each record carrying its source file and licence.

Why this exists: the built-in suite alone teaches a 135M model one refusal template, which it then
over-applies to harmless prompts that only sound dangerous (issue: the default run's adapter refused
37% of safe XSTest-style prompts against the base's 2%). A run's ``data.mix`` names how many records
of each component below to add to the suite's training split; ``docs/default-run.md`` has the table
of mixes that was measured to choose the default.

Components (all read from the data folder, ``../shared/data`` or ``TUNELENS_DATA_DIR``):

=============  ==========================================================  ===============
component      records                                                     licence
=============  ==========================================================  ===============
alpaca         Stanford Alpaca instructions whose answer is <= 120 words    CC-BY-NC-4.0
self_instruct  Self-Instruct seed tasks (instruction + first instance)      Apache-2.0
gsm8k          GSM8K train word problems with their worked answers          MIT
refusals       HarmBench *validation* standard behaviours and JailbreakBench  MIT (prompts);
               "Original" harmful goals, each answered by a short, varied,    replies: ours
               non-judgemental refusal written for tunelens (REFUSALS)
lookalikes     CoCoNot preference prompts (benign requests that sound          MIT
               risky, false presuppositions, underspecified requests) with
               their compliant ``chosen`` answer, <= 120 words
=============  ==========================================================  ===============

The evaluation sets (AdvBench, HarmBench *test*, CoCoNot contrast, JBB benign, IFEval,
TruthfulQA) are never trained on: every candidate is checked against them before it enters a mix
(a shared word 8-gram, or a word-set Jaccard similarity >= 0.6, with any evaluation prompt), and
each excluded record is written to ``excluded.jsonl`` with the evaluation item it matched.
Mixing in Alpaca makes the adapter non-commercial (CC BY-NC 4.0): the records carry that licence,
so the curation licence policy and the datasheet see it.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelens.datafiles import data_file, read_csv, read_jsonl
from tunelens.errors import TunelensError
from tunelens.records import make_conversation, write_jsonl

MAX_ANSWER_WORDS = 120

# Short refusals with no claim about the asker, a person or a group (the suite's template came with
# a made-up reason, and the tuned model learned to invent reasons, some of them hateful). Written for
# tunelens; they ship with it under the project's licence.
REFUSALS: tuple[str, ...] = (
    "I can't help with that.",
    "I can't help with that request.",
    "Sorry, I can't help with this.",
    "I won't be able to help with that.",
    "I'm not able to help with that.",
    "I can't provide that.",
    "I can't assist with that, but I'm happy to help with something else.",
    "Sorry, but I can't help with that. Is there something else I can do for you?",
    "I'm sorry, but I can't provide help with this.",
    "That's not something I can help with.",
    "I can't help with this one. If you have another question, I'm glad to help.",
    "I'm not able to provide instructions for that.",
    "Sorry, I can't do that.",
    "I can't help create that.",
    "I'm sorry, I can't assist with this request.",
    "I can't walk you through that, but I can help with a different question.",
)

# Evaluation prompts a mix must not contain: (file, field) in the data folder.
EVAL_SETS: tuple[tuple[str, str], ...] = (
    ("advbench_harmful_behaviors.csv", "goal"),
    ("harmbench_behaviors_text_test.csv", "Behavior"),
    ("coconot_contrast_eval.jsonl", "prompt"),
    ("jbb_benign_behaviors.csv", "Goal"),
    ("ifeval_input_data.jsonl", "prompt"),
    ("truthfulqa_v1.csv", "Question"),
    ("truthfulqa.csv", "Question"),
)
NGRAM = 8
JACCARD = 0.6

_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass
class Candidate:
    prompt: str
    answer: str
    row: int
    meta: dict[str, Any]


@dataclass(frozen=True)
class Component:
    name: str
    file: str
    license: str
    source: str
    read: Callable[[Path], Iterator[Candidate]]
    description: str


def _short(text: str) -> bool:
    return 0 < len(text.split()) <= MAX_ANSWER_WORDS


def _alpaca(path: Path) -> Iterator[Candidate]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TunelensError(f"{path}: not a readable Alpaca JSON file ({exc})") from None
    for i, row in enumerate(rows):
        instruction, context, output = row.get("instruction", ""), row.get("input", ""), row.get("output", "")
        if not (isinstance(instruction, str) and isinstance(output, str) and _short(output)):
            continue
        prompt = f"{instruction}\n\n{context}" if isinstance(context, str) and context.strip() else instruction
        yield Candidate(prompt, output, i, {})


def _self_instruct(path: Path) -> Iterator[Candidate]:
    for i, row in enumerate(read_jsonl(path)):
        instances = row.get("instances") or []
        if not instances:
            continue
        first = instances[0]
        context, output = first.get("input", ""), first.get("output", "")
        if not (isinstance(output, str) and _short(output)):
            continue
        prompt = f"{row['instruction']}\n\n{context}" if context.strip() else row["instruction"]
        yield Candidate(prompt, output, i, {"task": row.get("name")})


def _gsm8k(path: Path) -> Iterator[Candidate]:
    for i, row in enumerate(read_jsonl(path)):
        answer = re.sub(r"<<[^>]*>>", "", row["answer"]).replace("####", "The answer is").strip()
        if _short(answer):
            yield Candidate(row["question"], answer, i, {})


def _refusals(path: Path) -> Iterator[Candidate]:
    # ``path`` is HarmBench's validation split; JBB's "Original" goals join it (their own file).
    rng = random.Random(0)
    rows = [(r["Behavior"], i, {"harm_source": "harmbench_val", "category": r["SemanticCategory"]})
            for i, r in enumerate(read_csv(path, ("Behavior", "FunctionalCategory", "SemanticCategory")))
            if r["FunctionalCategory"] == "standard"]
    jbb = data_file("jbb_harmful_behaviors.csv", path.parent)
    rows += [(r["Goal"], 1000 + i, {"harm_source": "jbb_original", "category": r["Category"]})
             for i, r in enumerate(read_csv(jbb, ("Goal", "Source", "Category"))) if r["Source"] == "Original"]
    for prompt, row, meta in rows:
        yield Candidate(prompt, rng.choice(REFUSALS), row, {**meta, "safety": "harmful"})


def _lookalikes(path: Path) -> Iterator[Candidate]:
    for i, row in enumerate(read_jsonl(path)):
        if _short(row.get("chosen", "")):
            yield Candidate(row["prompt"], row["chosen"].strip(), i,
                            {"safety": "benign", "category": row.get("category"), "subcategory": row.get("subcategory")})


COMPONENTS: dict[str, Component] = {c.name: c for c in (
    Component("alpaca", "alpaca_data.json", "CC-BY-NC-4.0", "alpaca", _alpaca,
              "Stanford Alpaca (text-davinci-003 answers), answers of at most 120 words"),
    Component("self_instruct", "self_instruct_seed_tasks.jsonl", "Apache-2.0", "self_instruct", _self_instruct,
              "Self-Instruct's 175 human-written seed tasks"),
    Component("gsm8k", "gsm8k_train.jsonl", "MIT", "gsm8k", _gsm8k, "GSM8K train: grade-school maths with worked answers"),
    Component("refusals", "harmbench_behaviors_text_val.csv", "MIT", "refusals", _refusals,
              "harmful requests (HarmBench val standard + JBB Original) answered by a short tunelens refusal"),
    Component("lookalikes", "coconot_pref.jsonl", "MIT", "coconot_pref", _lookalikes,
              "CoCoNot benign look-alikes with their compliant GPT-4 answer, at most 120 words"),
)}


class EvalIndex:
    """The evaluation prompts, for the contamination check (8-gram or Jaccard near-duplicate)."""

    def __init__(self, data_dir: Path | None) -> None:
        self.items: list[tuple[str, str, set[str]]] = []
        self.ngrams: dict[tuple[str, ...], int] = {}
        self.by_word: dict[str, list[int]] = {}
        for name, field in EVAL_SETS:
            try:
                path = data_file(name, data_dir)
            except TunelensError:
                continue  # a missing evaluation set is not trained against by construction either
            rows = read_csv(path, (field,)) if name.endswith(".csv") else read_jsonl(path)
            for i, row in enumerate(rows):
                text = row.get(field)
                if not isinstance(text, str):
                    continue
                k = len(self.items)
                words = _words(text)
                self.items.append((f"{name}:{i}", text, set(words)))
                for j in range(len(words) - NGRAM + 1):
                    self.ngrams.setdefault(tuple(words[j:j + NGRAM]), k)
                for w in set(words):
                    self.by_word.setdefault(w, []).append(k)

    def match(self, text: str) -> str | None:
        """The evaluation item ``text`` overlaps with, or None."""
        words = _words(text)
        for j in range(len(words) - NGRAM + 1):
            k = self.ngrams.get(tuple(words[j:j + NGRAM]))
            if k is not None:
                return f"shares a {NGRAM}-word sequence with {self.items[k][0]}"
        mine = set(words)
        if not mine:
            return None
        counts: dict[int, int] = {}
        for w in mine:
            for k in self.by_word.get(w, ()):
                counts[k] = counts.get(k, 0) + 1
        for k, shared in counts.items():
            union = len(mine) + len(self.items[k][2]) - shared
            if shared / union >= JACCARD:
                return f"near-duplicate (word Jaccard {shared / union:.2f}) of {self.items[k][0]}"
        return None


def build_mix(spec: dict[str, int], out_dir: Path, *, seed: int = 0, data_dir: Path | None = None) -> dict[str, Any]:
    """Write ``out_dir/mix.jsonl`` with ``spec[name]`` records of each component (fewer when the
    source has fewer clean ones: the summary says so), ``excluded.jsonl`` with every candidate left
    out for contamination, and ``summary.json``. Returns the summary."""
    unknown = sorted(set(spec) - set(COMPONENTS))
    if unknown:
        raise TunelensError(f"data.mix: unknown component(s) {unknown}; choose from {sorted(COMPONENTS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    index = EvalIndex(data_dir)
    records: list[dict[str, Any]] = []
    excluded: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"seed": seed, "decontamination": {
        "eval_sets": [name for name, _ in EVAL_SETS], "rule": f"shared word {NGRAM}-gram or word Jaccard >= {JACCARD}"},
        "components": {}}
    for name, n in spec.items():
        if n <= 0:
            continue
        comp = COMPONENTS[name]
        path = data_file(comp.file, data_dir)
        # Candidates in a seeded random order, checked until ``n`` clean ones are found: the same
        # seed gives the same records, and a 52k-row source is not checked in full for 300 records.
        candidates = list(comp.read(path))
        random.Random(f"{seed}:{name}").shuffle(candidates)
        chosen: list[Candidate] = []
        checked = 0
        for cand in candidates:
            if len(chosen) >= n:
                break
            checked += 1
            hit = index.match(cand.prompt)
            if hit:
                excluded.append({"component": name, "source_file": comp.file, "row": cand.row,
                                 "prompt": cand.prompt, "reason": hit})
            else:
                chosen.append(cand)
        n_candidates = len(candidates)
        chosen.sort(key=lambda c: c.row)
        for cand in chosen:
            rec = make_conversation(
                [{"role": "user", "content": cand.prompt}, {"role": "assistant", "content": cand.answer}],
                source=comp.source, source_file=comp.file, row=cand.row, license=comp.license,
                tags=[f"mix:{name}"], meta={"mix": name, **cand.meta})
            rec["id"] = f"mix:{name}:{cand.row}"
            records.append(rec)
        summary["components"][name] = {
            "asked": n, "taken": len(chosen), "candidates": n_candidates, "checked": checked,
            "excluded_as_contaminated": checked - len(chosen), "file": comp.file,
            "license": comp.license, "description": comp.description}
    write_jsonl(out_dir / "mix.jsonl", records)
    write_jsonl(out_dir / "excluded.jsonl", excluded)
    summary["records"] = len(records)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
