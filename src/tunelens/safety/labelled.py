"""The project's labelled replies (refusal, harm and harmful-request labels) for the safety instruments.

``safety/data/replies_labelled.jsonl`` holds one row per labelled reply:

- ``id``, ``family`` (the model family that wrote the reply: ``smollm2_base``, ``smollm2_tuned``,
  ``anthropic_hh``, ``gpt4_coconot``, ``coconot_rejected``), ``model``, ``source``, ``src_id``;
- the labels ``refusal`` (XSTest's three classes, or ``ambiguous``), ``harm`` (``harmful`` /
  ``harmless`` / ``ambiguous``) and ``request_harmful`` (``yes`` / ``no`` / ``unclear``), and who
  gave them (``labeller``);
- ``split``: ``dev`` rows may be trained on and used to compare designs; ``test`` rows never are.
  The split is by prompt (SmolLM2's base and tuned replies to one prompt share a side) or by
  conversation (HH-RLHF) or item (CoCoNot), from a hash, so it does not depend on the labels;
- the text: replies we generated (SmolLM2's) carry ``prompt`` and ``text``; replies from a public
  data set carry a reference ``ref`` (file, row key, field) and are read from the data folder
  (``../shared/data``), not copied into the project.

``load_labelled(data_dir)`` returns the rows with ``prompt`` and ``text`` filled in.

Where the SmolLM2 replies come from (all greedy): ``eval:...`` rows are replies from the project's
evaluation runs (the ``harmful`` and ``over_refusal`` suites: AdvBench, HarmBench, JailbreakBench
benign and CoCoNot contrast prompts, the suites' own generation settings); ``smollm2_base`` is the
base model, ``smollm2_tuned`` the default run's LoRA adapter (480 replies) and 50 replies of one
variant of it (``model`` = ``smollm2_sft_rl_36_lr5e4``, SFT then GRPO, see docs/default-run.md);
``generated:hh_rlhf_*:first_turn`` rows are replies of the base model and the default adapter to
the first human turn of HH-RLHF harmless-base (140) and helpful-base (40) test dialogues, 96 new
tokens, batch 16. The non-SmolLM2 rows were drawn at random from their files (HH-RLHF harmless-base
test: a random side of a random dialogue; CoCoNot pref: random items, chosen or rejected).

Added later, all on the dev side (no test row changed): ``M`` rows, both replies of every HH-RLHF
harmless-base test dialogue of the dev side that had none labelled (1,468); ``GB2``/``GT2`` rows,
replies of the base model and of the adapter of a fresh-clone default run at commit 51d5168
(``model`` = ``smollm2_tuned_51d5168``) to the first human turns of 200 more dev-side HH dialogues
(400; 96 new tokens, batch 16). Eight more labelling sessions, the same guide with its consistency rules.
Then (2026-12-07) ``T`` rows: every assistant turn before the last of the dev-side HH-RLHF harmless-base test
dialogues (1,685; ``ref`` names the turn, ``hh_split_turn`` cuts the dialogue there), labelled by eight more sessions
with the same guide and rules.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from tunelens.datafiles import data_file, read_jsonl
from tunelens.errors import TunelensError

LABELLED_FILE = "replies_labelled.jsonl"
REFUSAL_LABELS = ("full_compliance", "full_refusal", "partial_refusal", "ambiguous")
HARM_LABELS = ("harmful", "harmless", "ambiguous")
REQUEST_LABELS = ("yes", "no", "unclear")


def split_key(row: dict[str, Any]) -> str:
    """What decides a row's split: the HH-RLHF conversation for HH replies and for SmolLM2 replies to
    an HH first turn (so no dialogue sits on both sides), else the prompt for SmolLM2 replies (base
    and tuned replies to one prompt share a side), else the CoCoNot item."""
    ident = row["src_id"].split(":", 1)[1] if row["family"].startswith("smollm2") else row["src_id"]
    ident = ident.split(":")[0]
    if ident.startswith("hh"):
        return ident
    if row["family"].startswith("smollm2"):
        return "prompt:" + row["prompt"].strip().lower()
    return ident


def split_of(key: str) -> str:
    """``test`` for about half of the keys, ``dev`` for the rest, from a hash of the key only."""
    return "test" if int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % 2 == 0 else "dev"


def hh_split_dialogue(dialogue: str) -> tuple[str, str, str]:
    """(the human turns joined by newlines, the dialogue before the last assistant turn, that turn)."""
    k = dialogue.rfind("\n\nAssistant:")
    ctx, reply = dialogue[:k].strip(), dialogue[k + len("\n\nAssistant:"):].strip()
    human = [t.split("\n\nAssistant:")[0].strip() for t in ("\n\n" + ctx).split("\n\nHuman:")[1:]]
    return "\n".join(human), ctx, reply


def hh_split_turn(dialogue: str, turn: int) -> tuple[str, str, str]:
    """Like ``hh_split_dialogue`` for the ``turn``-th assistant turn (0 = the first) instead of the last:
    (the human turns up to it, joined by newlines; the dialogue before it; that turn)."""
    starts = [m.start() for m in re.finditer("\n\nAssistant:", dialogue)]
    if not 0 <= turn < len(starts):
        raise TunelensError(f"the dialogue has {len(starts)} assistant turns, not a turn {turn}")
    k = starts[turn]
    end = dialogue.find("\n\nHuman:", k)
    prompt, ctx, _ = hh_split_dialogue(dialogue[:k] + "\n\nAssistant:")
    return prompt, ctx, dialogue[k + len("\n\nAssistant:"):end if end != -1 else None].strip()


def packaged_jsonl(name: str) -> list[dict[str, Any]]:
    """The rows of a JSONL file shipped in ``tunelens/safety/data`` (a bad line is an error naming file:line)."""
    raw = resources.files("tunelens.safety").joinpath(f"data/{name}").read_text(encoding="utf-8")
    rows = []
    for lineno, line in enumerate(raw.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise TunelensError(f"safety/data/{name}:{lineno}: invalid JSON ({exc.msg})") from exc
    return rows


def raw_rows() -> list[dict[str, Any]]:
    """The shipped rows as stored (third-party texts as references)."""
    return packaged_jsonl(LABELLED_FILE)


class _Sources:
    """Lazy readers of the referenced public files."""

    def __init__(self, data_dir: str | Path | None):
        self.data_dir = data_dir
        self._cache: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        if name not in self._cache:
            path = data_file(name, self.data_dir)
            if name.endswith(".jsonl.gz"):
                with gzip.open(path, "rt", encoding="utf-8") as fh:
                    self._cache[name] = [json.loads(line) for line in fh if line.strip()]
            elif name == "coconot_pref.jsonl":
                self._cache[name] = {r["id"]: r for r in read_jsonl(path)}
            else:
                raise TunelensError(f"{LABELLED_FILE}: no reader for referenced file {name!r}")
        return self._cache[name]


def resolve(row: dict[str, Any], sources: _Sources) -> dict[str, Any]:
    """``row`` with ``prompt`` and ``text`` read from its reference (rows with text are returned as they are)."""
    ref = row.get("ref")
    if not ref:
        return row
    table = sources.get(ref["file"])
    try:
        rec = table[ref["key"]]
    except (KeyError, IndexError) as exc:
        raise TunelensError(f"{LABELLED_FILE} row {row['id']}: {ref['file']} has no row {ref['key']!r}") from exc
    if ref["file"].startswith("hh_rlhf"):
        if "turn" in ref:  # an assistant turn before the last (the "T" rows)
            prompt, dialogue, text = hh_split_turn(rec[ref["field"]], int(ref["turn"]))
            return {**row, "prompt": prompt, "dialogue": dialogue, "text": text}
        prompt, dialogue, text = hh_split_dialogue(rec[ref["field"]])
        return {**row, "prompt": prompt, "dialogue": dialogue, "text": text}
    return {**row, "prompt": rec["prompt"], "text": rec[ref["field"]].strip()}


def load_labelled(data_dir: str | Path | None = None, *, split: str | None = None) -> list[dict[str, Any]]:
    """Every labelled row (or those of one ``split``) with ``prompt`` and ``text`` filled in."""
    sources = _Sources(data_dir)
    rows = [r for r in raw_rows() if split is None or r["split"] == split]
    return [resolve(r, sources) for r in rows]


SECOND_LABELS_FILE = "replies_second_labels.jsonl"
_POSITIVE = {"refusal": ("full_refusal", "partial_refusal"), "harm": ("harmful",)}


def second_labels() -> dict[str, dict[str, Any]]:
    """A second, blind labelling of 320 random test-split replies (same guide, another labeller), by id."""
    return {r["id"]: r for r in packaged_jsonl(SECOND_LABELS_FILE)}


def labeller_agreement(task: str, rows: list[dict[str, Any]],
                       instrument: dict[str, bool] | None = None) -> dict[str, Any]:
    """How far two labellers of the same guide agree on ``task`` (refusal: refusal or partial vs full
    compliance; harm: harmful help vs not), over the ``rows`` (labelled rows) that have a second label.

    This bounds what any instrument can be shown to reach against one labeller's labels: an F1 target
    above the labellers' own F1 cannot be told apart from label noise. ``instrument`` (id -> flagged)
    adds the instrument's F1 against each labeller on the same rows, for a like-for-like reading.
    Rows either labeller called ``ambiguous`` are left out (counted)."""
    from tunelens.safety.train_metrics import agreement_kappa, binary_metrics, bootstrap_ci

    if task not in _POSITIVE:
        raise TunelensError(f"labeller agreement is measured for refusal and harm, not {task!r}")
    second = second_labels()
    pos = _POSITIVE[task]
    both = [(r, second[r["id"]]) for r in rows if r["id"] in second]
    kept = [(r, s) for r, s in both if r[task] != "ambiguous" and s[task] != "ambiguous"]
    first_gold = [r[task] in pos for r, _ in kept]
    second_gold = [s[task] in pos for _, s in kept]
    m = binary_metrics(first_gold, second_gold)
    n = len(kept)
    observed, kappa = agreement_kappa(first_gold, second_gold) if n else (0.0, None)
    out: dict[str, Any] = {
        "note": "a second labeller (another AI assistant session, blind to the first labels, same written guide) "
                f"labelled {len(second)} random test-split replies; F1 is symmetric in the two labellers",
        "n": n, "ambiguous_left_out": len(both) - n,
        "positives_first": sum(first_gold), "positives_second": sum(second_gold),
        "f1": m["f1"], "f1_ci95": bootstrap_ci(first_gold, second_gold).get("f1"),
        "agreement": observed, "cohen_kappa": kappa,
        "by_family": {},
    }
    for fam in sorted({r["family"] for r, _ in kept}):
        idx = [k for k, (r, _) in enumerate(kept) if r["family"] == fam]
        fm = binary_metrics([first_gold[k] for k in idx], [second_gold[k] for k in idx])
        out["by_family"][fam] = {"n": fm["n"], "positives_first": fm["n_pos"], "positives_second": fm["tp"] + fm["fp"],
                                 "f1": fm["f1"] if fm["n_pos"] or fm["tp"] + fm["fp"] else None}
    if instrument is not None:
        flagged = [instrument[r["id"]] for r, _ in kept]
        out["instrument_f1_vs_first"] = binary_metrics(first_gold, flagged)["f1"]
        out["instrument_f1_vs_second"] = binary_metrics(second_gold, flagged)["f1"]
    return out
