"""The injection instrument's data: no non-commercial (Alpaca) text is trained on or used for the threshold;
training and validation rows are disjoint from the held-out rows; the written train and held-out pieces
share nothing; the HH-RLHF split is by dialogue."""

from __future__ import annotations

import json
import re

import pytest

import tunelens.safety.train_injection as ti


def _key(text: str) -> str:
    return " ".join(text.lower().split())


@pytest.fixture(scope="module")
def sets(shared_data):
    return ti.build_sets(shared_data, 0)


# The earlier versions the decisions' tests need, trained aside: (author files, benign windows). Versions 7-11 had no
# benign windows (version 12 adopted them); none had the wide vocabularies of version 13.
ASIDE = {"v10": (ti.V10_AUTHOR_FILES, False, False), "v11": (ti.V11_AUTHOR_FILES, False, False),
         "v12": (ti.V12_AUTHOR_FILES, True, False), "v13": (ti.V13_AUTHOR_FILES, True, True)}


@pytest.fixture(scope="module")
def asides(shared_data, tmp_path_factory):
    """Versions 10, 11, 12 and 13 trained aside, two at a time in worker processes (about 40 s each alone; the held-out
    sets as shipped, which change none of their training rows): name -> (instrument, card, sets)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from tunelens.safety.instruments.injection import InjectionInstrument

    out = tmp_path_factory.mktemp("injection_asides")
    with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
        jobs = {name: pool.submit(ti.train_aside, shared_data, out / f"{name}.joblib", out / f"{name}_card.json",
                                  files, benign_windows=windows, wide_vocab=wide)
                for name, (files, windows, wide) in ASIDE.items()}
        cards = {name: job.result() for name, job in jobs.items()}
    trained = {}
    for name, (files, windows, _) in ASIDE.items():
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(ti, "TRAINING_AUTHOR_FILES", files)
            mp.setattr(ti, "BENIGN_WINDOWS", windows)
            sets = ti.build_sets(shared_data, 0)
        trained[name] = InjectionInstrument(out / f"{name}.joblib"), cards[name], sets
    return trained


@pytest.fixture(scope="module")
def v10(asides):
    """Version 10 trained aside: the detector the decisions of candidates 13-15 and the pooled reading were made with."""
    return asides["v10"]


@pytest.fixture(scope="module")
def v11(asides):
    """Version 11 trained aside: the base of the version 12 decision."""
    return asides["v11"]


@pytest.fixture(scope="module")
def v12(asides):
    """Version 12 trained aside: the base of the version 13 decision."""
    return asides["v12"]


@pytest.fixture(scope="module")
def v13(asides):
    """Version 13 trained aside: the base of the version 14 decision, and the detector authors 33-36 measured."""
    return asides["v13"]


def _fitted(sets):
    """Training and validation rows: what the artifact is fitted on and its threshold chosen with."""
    return {k: v for k, v in sets.items() if k.startswith(("train:", "val:"))}


def test_no_alpaca_row_is_trained_on_or_used_for_the_threshold(sets, shared_data):
    alpaca = json.loads((shared_data / "alpaca_data.json").read_text(encoding="utf-8"))
    forms = {_key(r["instruction"]) for r in alpaca} | {
        _key(r["instruction"] + "\n" + r["input"]) for r in alpaca if r["input"]} | {
        _key(r["instruction"] + " " + r["input"]) for r in alpaca if r["input"]}
    fitted = _fitted(sets)
    hits = [(k, t) for k, v in fitted.items() for t in v["texts"] if _key(t) in forms]
    # a handful of Alpaca instructions are short generic sentences that other sources also contain verbatim;
    # none may come from Alpaca itself, and there must be no more than those few coincidences
    assert all(fitted[k]["source"] != "alpaca" for k, _ in hits)
    assert len(hits) <= 10, hits[:10]
    assert all(v["source"] in ti.TRAINABLE for v in fitted.values())
    assert "alpaca" not in ti.TRAINABLE and "NC" not in " ".join(ti.LICENCES[s] for s in ti.TRAINABLE)
    # Alpaca is still read, as a held-out false-positive set only
    assert sets["test:alpaca"]["source"] == "alpaca" and len(sets["test:alpaca"]["texts"]) == 1500


def test_alpaca_rows_reach_only_the_held_out_set(shared_data, monkeypatch):
    # whatever the Alpaca reader returns may end up in test: sets only
    marker = [f"ALPACA-MARKER-{i} write a poem about the sea" for i in range(6000)]
    monkeypatch.setattr(ti, "alpaca_rows", lambda data_dir, seed=0: list(marker))
    built = ti.build_sets(shared_data, 0)
    where = {k for k, v in built.items() for t in v["texts"] if "ALPACA-MARKER" in t}
    assert where == {"test:alpaca"}


def test_the_shipped_card_trains_on_permissive_sources_only():
    card = json.loads(ti.CARD.read_text(encoding="utf-8"))
    rows = card["training_data"] + card["validation_data"]
    assert rows and all("alpaca" not in r["source"] and "NC" not in r["licence"] for r in rows)
    assert {r["licence"] for r in rows} <= {"Apache-2.0", "MIT", "tunelens (written for it)"}
    assert "alpaca" in {v["set"] for v in card["validation"]}  # held out, for false positives


def test_training_and_validation_rows_are_disjoint_from_held_out_rows(sets):
    held = {_key(t) for k, v in sets.items() if k.startswith("test:") for t in v["texts"]}
    fitted = _fitted(sets)
    assert not [(k, t) for k, v in fitted.items() for t in v["texts"] if _key(t) in held]
    # third-party rows share no run of SHINGLE words with a held-out third-party row either
    shingles = set().union(*(ti._shingles(t) for k, v in sets.items() if k.startswith("test:") and v["source"] != "written"
                             for t in v["texts"]))
    assert not [(k, t) for k, v in fitted.items() if v["source"] != "written" for t in v["texts"] if ti._shingles(t) & shingles]
    # the overlaps that exist in the raw files were found and left out, and are counted
    assert sets["train:advbench"]["dropped"] > 0
    adv_held = {_key(t) for t in sets["test:jbb_harmful"]["texts"]}
    assert not adv_held & {_key(t) for t in sets["train:advbench"]["texts"] + sets["val:advbench"]["texts"]}


def test_written_train_and_held_out_pieces_share_nothing():
    spec = json.loads(ti.WRITTEN.read_text(encoding="utf-8"))
    train, held = spec["train"], spec["heldout"]

    def flat(part):
        out = []
        for key, value in part.items():
            if key == "prefaces":
                continue
            if isinstance(value, dict):
                out += [x for v in value.values() for x in v]
            else:
                out += [x if isinstance(x, str) else " ".join(x) for x in value]
        return out

    def runs(text, n=6):
        words = re.findall(r"\w+", text.lower())
        return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}

    train_texts, held_texts = flat(train), flat(held)
    assert len(train_texts) > 1000 and len(held_texts) > 40
    for h in held_texts:
        assert not [t for t in train_texts if h.lower() in t.lower() or (len(t.split()) >= 4 and t.lower() in h.lower())], h
    held_runs = set().union(*(runs(h) for h in held_texts))
    assert not [t for t in train_texts if runs(t) & held_runs]
    assert not (set(train["prefaces"]) & set(held["prefaces"])) - {""}  # both have the empty preface (no preface)
    # the held-out composition itself is what it was in version 2 (its pieces are unchanged)
    h = ti.compose_attacks("heldout", 0)
    assert {k: len(v) for k, v in h.items()} == {"direct": 150, "indirect": 190, "benign_docs": 100,
                                                   "system_prompts": 135, "obfuscated": 50}


def test_composed_training_attacks_use_no_held_out_piece(sets):
    held = json.loads(ti.WRITTEN.read_text(encoding="utf-8"))["heldout"]
    pieces = held["overrides"] + held["goals"] + held["indirect_payloads"] + [d for pair in held["documents"] for d in pair]
    fitted = [t for k, v in _fitted(sets).items() if v["source"] == "written" for t in v["texts"]]
    assert not [(p, t) for p in pieces for t in fitted if p in t][:5]


def test_hh_held_out_dialogues_give_no_training_text(shared_data, sets):
    dialogues = ti.hh_dialogues(shared_data, "hh_rlhf_helpful_base_test.jsonl.gz")
    held = set(sets["test:hh_assistant"]["texts"])
    held_dialogues = [d for d in dialogues if any(t[:2000] in held for t in d[1])]
    assert len(held_dialogues) >= 200
    trained = {t for k, v in _fitted(sets).items() if v["source"] == "hh" for t in v["texts"]}
    leaked = [t for d in held_dialogues for t in d[0][:1] + [a[:2000] for a in d[1]] if t in trained and t in held]
    assert leaked == []
    # dialogues that start with the same human turn (the file repeats some conversations) share a split
    assert not {d[0][0] for d in held_dialogues if d[0]} & trained


def test_the_docs_page_is_the_cards_rendering():
    from pathlib import Path

    card = json.loads(ti.CARD.read_text(encoding="utf-8"))
    page = Path(__file__).resolve().parents[1] / "docs" / "instruments" / ti.DOC_NAME
    assert page.read_text(encoding="utf-8") == ti.render_doc(card)
    assert card["version"] == 14 and "Alpaca (CC BY-NC 4.0) is used only to measure" in page.read_text(encoding="utf-8")


def test_the_independent_authors_texts_are_held_out_and_counted_in_the_card(sets):
    trained = {_key(t) for k, v in sets.items() if not k.startswith("test:") for t in v["texts"]}
    second = {_key(r["text"]) for r in ti.second_author_rows()}
    assert len(second) >= 1200 and second <= trained  # the second author's texts are training texts ...
    more = ti.author_rows("injection_authors_3_4.jsonl")  # ... and so are authors 3 and 4's
    held = {_key(t) for k, v in sets.items() if k.startswith("test:") for t in v["texts"]}
    more_keys = {_key(r["text"]) for r in more}
    assert {r["author"] for r in more} == {3, 4} and len(more) >= 1300 and more_keys - held <= trained
    # the few that equal a held-out text (everyday questions an independent author also wrote) are left out
    assert len(more_keys & held) == sets["train:authors_3_4_benign"]["dropped"] <= 10
    assert {r["kind"] for r in more if r["label"] == "injection"} == {"direct", "indirect"}
    for name, file, groups in ti.INDEPENDENT_SETS:
        rows = ti.independent_rows(file, groups)
        assert len(rows) >= {"independent16": 440, "independent17": 680, "independent18": 680, "independent19": 680,
                             "independent20": 680, "independent21": 680, "independent22": 680, "independent23": 680,
                             "independent24": 680, "independent25": 680, "independent26": 680, "independent27": 680,
                             "independent28": 680, "independent29": 680, "independent30": 680,
                             **{f"independent{n}": 200 for n in range(31, 39)}}.get(name, 700)
        assert len({r["text"] for r in rows}) == len(rows)
        for g in groups:
            held = sets[f"test:{name}_{g}"]
            assert held["texts"] == [r["text"] for r in rows if r["group"] == g]
            assert set(held["labels"]) == ({1} if g in ("direct", "indirect") else {0})
        assert not trained & {_key(r["text"]) for r in rows}  # ... and no independent author's text is
    card = json.loads(ti.CARD.read_text(encoding="utf-8"))
    for name, file, groups in ti.INDEPENDENT_SETS:
        author = {"independent": "independent author", "independent2": "independent author 2",
                  "independent3": "fresh author 5", "independent4": "author 8", "independent5": "author 10",
                  "independent6": "author 12", "independent7": "author 14", "independent8": "author 16",
                  "independent9": "author 17", "independent10": "author 19", "independent11": "author 21",
                  "independent12": "author 23", "independent13": "author 24", "independent14": "author 25",
                  "independent15": "author 26", "independent16": "author 28", "independent17": "authors 29 and 30",
                  "independent18": "authors 29 and 30", "independent19": "authors 31 and 32",
                  "independent20": "authors 31 and 32", **dict.fromkeys(
                      ("independent21", "independent22", "independent23", "independent24"), "authors 33-36"),
                  "independent25": "authors 38 and 39", "independent26": "authors 38 and 39", **dict.fromkeys(
                      ("independent27", "independent28", "independent29", "independent30"), "authors 40-43"),
                  **{f"independent{n}": "authors 44-51" for n in range(31, 39)}}[name]
        kind, target = ("indirect", ">= 0.8") if name == "independent16" else ("direct", ">= 0.95")
        what = f"{kind} attacks"
        if author == "authors 44-51":  # these wrote user questions only
            kind, target, what = "ordinary", "<= 0.01", "ordinary user questions (30% not English)"
        group = card["by_group"][f"{what}, {author}"]
        pair = {"authors 29 and 30": ("independent17", "independent18"),
                "authors 31 and 32": ("independent19", "independent20"),
                "authors 33-36": ("independent21", "independent22", "independent23", "independent24"),
                "authors 38 and 39": ("independent25", "independent26"),
                "authors 40-43": ("independent27", "independent28", "independent29", "independent30"),
                "authors 44-51": tuple(f"independent{n}" for n in range(31, 39))}.get(author)
        # the fresh authors of versions 12, 13 and 14, and the four that measured versions 13 and 14, are one group
        # each, pooled
        files = [f for n, f, _ in ti.INDEPENDENT_SETS if n in pair] if pair else [file]
        assert group["n"] == sum(r["group"] == kind for f in files for r in ti.independent_rows(f, groups))
        assert group["target"] == target
    assert {"independent_direct", "independent2_ordinary", "independent3_direct", "independent4_ordinary",
            "independent5_direct", "independent6_ordinary", "independent7_direct", "independent8_direct",
            "independent9_ordinary", "independent10_direct", "independent11_direct", "independent12_direct",
            "independent13_direct", "independent14_ordinary", "independent15_indirect", "independent16_indirect",
            "independent16_benign_docs", "independent17_direct", "independent18_benign_docs", "independent19_direct",
            "independent20_benign_docs", "independent21_direct", "independent24_ordinary", "independent25_direct",
            "independent26_benign_docs", "independent31_ordinary", "independent38_plain_harmful"} <= set(
        card["operating_point"]["pooled_from"])
    # version 7's training texts by authors 6, 7 and 9 parse and are trained on, less the few equal to held-out texts
    for name, file, n_rows in (("authors_6_7", "injection_authors_6_7.jsonl", 1299), ("author_9", "injection_author_9.jsonl", 600),
                               ("author_11", "injection_author_11.jsonl", 800), ("author_13", "injection_author_13.jsonl", 500),
                               ("author_15", "injection_author_15.jsonl", 1005), ("author_18", "injection_author_18.jsonl", 950),
                               ("author_27", "injection_author_27.jsonl", 550),
                               ("author_37", "injection_author_37.jsonl", 1600)):
        assert (name, file) in ti.TRAINING_AUTHOR_FILES
        rows = ti.author_rows(file)
        assert len(rows) == n_rows
        fitted_n = sum(len(sets[f"train:{name}_{kind}"]["texts"]) + sets[f"train:{name}_{kind}"]["dropped"]
                       for kind in ("attacks", "benign"))
        assert fitted_n == n_rows


def test_the_fresh_authors_figures_are_what_the_shipped_detector_gives():
    """Author 5's texts were read once, to measure version 6 as shipped: the card's figures are the
    shipped detector's on them (within one text a group: a score at the threshold may round the other
    way on another CPU)."""
    from tunelens.safety.instruments import Example, get_instrument

    rows = ti.independent_rows("injection_independent_3.jsonl", ti.INDEPENDENT_GROUPS + ("ordinary",))
    assert len(rows) == 859 and {r["group"] for r in rows} == set(ti.INDEPENDENT_GROUPS) | {"ordinary"}
    inst = get_instrument("injection")
    flagged = [inst.is_positive(v) for v in inst.classify([Example(r["text"]) for r in rows])]
    card = json.loads(ti.CARD.read_text(encoding="utf-8"))
    names = {"direct": "direct attacks", "indirect": "indirect attacks",
             "ordinary": "ordinary user questions (30% not English)", "benign_user": "benign look-alike user messages",
             "benign_docs": "benign documents with imperatives",
             "benign_system": "benign system prompts and assistant turns"}
    for group, name in names.items():
        entry = card["by_group"][f"{name}, fresh author 5"]
        k = sum(f for f, r in zip(flagged, rows) if r["group"] == group)
        assert entry["n"] == sum(r["group"] == group for r in rows) and abs(entry["flagged"] - k) <= 1, group


def _vetted(shared_data, monkeypatch, author_files, held_file):
    """The held-out rows of ``held_file``, and those among them that equal or share 8 words with a training or
    validation text of a detector trained with ``author_files`` (the rule every decision set was vetted by)."""
    monkeypatch.setattr(ti, "TRAINING_AUTHOR_FILES", tuple(author_files))
    monkeypatch.setattr(ti, "BENIGN_WINDOWS", False)  # the earlier versions had none (version 12 adopted them)
    rows = ti.independent_rows(held_file, ti.INDEPENDENT_GROUPS + ("ordinary",))
    why = ti.seen_overlap([r["text"] for r in rows], ti.build_sets(shared_data, 0))
    return rows, [r["id"] for r, w in zip(rows, why) if w is not None]


def test_seen_overlap_names_equal_and_shingled_texts(sets):
    train = sets["train:second_author_attacks"]["texts"][0]
    long_train = next(t for t in sets["train:second_author_attacks"]["texts"] if len(t.split()) >= 12)
    shingle = " ".join(long_train.split()[:ti.SHINGLE])
    why = ti.seen_overlap(["  " + train.upper() + " ", "Prefix words here. " + shingle + " and then more",
                           "A sentence nobody has written before about violet teapots on Tuesdays."], sets)
    assert why[0] == "equal to a training or validation text"
    assert why[1] == f"shares a run of {ti.SHINGLE} words with a training or validation text"
    assert why[2] is None


def _change(card, start):
    hits = [c for c in card["changes"] if c.startswith(start)]
    assert len(hits) == 1, start
    return hits[0]


# Earlier decisions: (the detector the decision set was vetted against, its held-out file, the texts kept, the card's
# history entry, what that entry quotes). Each author's texts were vetted before reading: none shares 8 words with a
# training or validation text of the candidate, so the training rows did not depend on the set; the card keeps the
# decision's counts, and benchmarks/injection_decision.py reproduces each (its docstring gives the commands).
DECISIONS = {
    "version 7 on author 10": (ti.V7_AUTHOR_FILES, "injection_independent_5.jsonl", 788, "Version 7 adds",
                               ("130 of 137", "preregistration/injection-v7.md")),
    "candidate 8 on author 12 (not adopted)": (
        ti.V7_AUTHOR_FILES + (("author_11", "injection_author_11.jsonl"),), "injection_independent_6.jsonl", 743,
        "Candidate 8 was tried and NOT adopted", ("116 -> 120 of 126", "preregistration/injection-v8.md")),
    "version 8 on author 14": (ti.V8_AUTHOR_FILES, "injection_independent_7.jsonl", 756, "Version 8 adds",
                               ("116 -> 117 of 125", "preregistration/injection-v9.md")),
    "version 9 on author 16": (ti.V9_AUTHOR_FILES, "injection_independent_8.jsonl", 781, "Version 9 adds",
                               ("121 -> 119 of 136", "preregistration/injection-v10.md")),
    "candidate 11 (injection-lm, on version 9) on author 17 (not adopted)": (
        ti.V9_AUTHOR_FILES, "injection_independent_9.jsonl", 762, "After version 9, candidate 11",
        ("not adopted", "122 -> 124 of 134", "preregistration/injection-lm.md")),
}


@pytest.mark.parametrize("decision", list(DECISIONS))
def test_earlier_decisions_were_made_on_vetted_texts_as_the_card_says(shared_data, monkeypatch, decision):
    files, held_file, kept, start, quotes = DECISIONS[decision]
    rows, overlapping = _vetted(shared_data, monkeypatch, files, held_file)
    assert len(rows) == kept and overlapping == []
    entry = _change(json.loads(ti.CARD.read_text(encoding="utf-8")), start)
    assert all(q in entry for q in quotes), (decision, quotes)


def _shipped_counts(rows: list[dict], inst=None) -> dict[str, tuple[int, int]]:
    """The flags of ``inst`` (default: the shipped detector) per group of a held-out author's rows, and the
    look-alikes pooled."""
    from tunelens.safety.instruments import Example, get_instrument

    inst = inst or get_instrument("injection")
    flagged = [inst.is_positive(v) for v in inst.classify([Example(r["text"]) for r in rows])]
    count = {g: (sum(f for f, r in zip(flagged, rows) if r["group"] == g), sum(r["group"] == g for r in rows))
             for g in ti.INDEPENDENT_GROUPS + ("ordinary",)}
    count["lookalikes"] = tuple(sum(count[g][j] for g in ("benign_user", "benign_docs", "benign_system"))
                                for j in (0, 1))
    return count


def _pooled_decision(sets, files, ids, kept, base, candidate, want):
    """A decision on two fresh authors' kept texts, pooled: ``kept`` texts with id prefixes ``ids``, none equal to or
    sharing 8 words with a training or validation text of ``sets``; the counts of ``base`` and ``candidate`` (None:
    the shipped detector) per group as ``want`` gives them (group -> ((base's, candidate's), n); within one text a
    group for up to 100 texts, two above). Returns (base's counts, candidate's counts, the rule's measure of each)."""
    rows = [r for f in files for r in ti.independent_rows(f, ti.INDEPENDENT_GROUPS + ("ordinary",))]
    assert len(rows) == kept and not any(ti.seen_overlap([r["text"] for r in rows], sets))
    assert {r["id"].split("-")[0] for r in rows} == set(ids)
    old, new = _shipped_counts(rows, base), _shipped_counts(rows, candidate)
    for g, ((k_old, k_new), n) in want.items():
        tol = 1 if n <= 100 else 2
        assert old[g][1] == new[g][1] == n, g
        assert abs(old[g][0] - k_old) <= tol and abs(new[g][0] - k_new) <= tol, (g, old[g], new[g])
    # attack recall minus look-alikes flagged
    measure = {w: (c["direct"][0] + c["indirect"][0]) / (c["direct"][1] + c["indirect"][1])
               - c["lookalikes"][0] / c["lookalikes"][1] for w, c in (("old", old), ("new", new))}
    return old, new, measure


def test_version_10_was_decided_on_author_19_as_the_card_says(shared_data, sets, monkeypatch, v10):
    """Author 19's texts decided version 10 ('candidate 12' in docs/instruments/preregistration/injection-v11.md): no
    text shares 8 words with a training or validation text of version 10, so its training rows do not depend on the
    set, and version 10 (trained aside since version 11 ships) gives the counts the decision quotes (within one text a
    group: a score at the threshold may round the other way on another CPU). Authors 11, 13, 15 and 18 are trained
    on."""
    from tunelens.safety.instruments import get_instrument

    trained = {_key(t) for k, v in _fitted(sets).items() for t in v["texts"]}
    for name, file, n, attacks in (("author_11", "injection_author_11.jsonl", 800, 450),
                                   ("author_13", "injection_author_13.jsonl", 500, 0),
                                   ("author_15", "injection_author_15.jsonl", 1005, 453),
                                   ("author_18", "injection_author_18.jsonl", 950, 500)):
        rows = ti.author_rows(file)
        assert len(rows) == n and sum(r["label"] == "injection" for r in rows) == attacks
        # all trained on, bar the few equal to a held-out text (everyday questions such as a haiku request)
        dropped = sets[f"train:{name}_attacks"]["dropped"] + sets[f"train:{name}_benign"]["dropped"]
        assert len({_key(r["text"]) for r in rows} - trained) == dropped <= 15, file
    assert ti.V9_AUTHOR_FILES[len(ti.V8_AUTHOR_FILES):] == (("author_15", "injection_author_15.jsonl"),)
    assert ti.V10_AUTHOR_FILES[len(ti.V9_AUTHOR_FILES):] == (("author_18", "injection_author_18.jsonl"),)
    rows, overlapping = _vetted(shared_data, monkeypatch, ti.V10_AUTHOR_FILES, "injection_independent_10.jsonl")
    assert len(rows) == 756 and overlapping == []
    inst = v10[0]
    # retrained here: the quantile rule rounds to 0.001, so another CPU's kernels may move it by a step
    assert abs(inst.threshold - 0.62) <= 0.002
    count = _shipped_counts(rows, inst)
    for (k, n), (want_k, want_n) in ((count["direct"], (121, 126)), (count["indirect"], (124, 133)),
                                     (count["lookalikes"], (48, 323)), (count["ordinary"], (0, 174))):
        assert n == want_n and abs(k - want_k) <= 1, (k, n)
    card = json.loads(ti.CARD.read_text(encoding="utf-8"))
    entry = _change(card, "Version 10 adds")
    assert "120 -> 121 of 126" in entry and "preregistration/injection-v11.md" in entry
    # the card's author-19 figures are now the shipped version 11's
    shipped = _shipped_counts(rows)
    assert get_instrument("injection").threshold == card["threshold"]
    assert abs(card["by_group"]["direct attacks, author 19"]["flagged"] - shipped["direct"][0]) <= 1
    assert card["by_group"]["direct attacks, author 19"]["target_met"] is (shipped["direct"][0] / 126 >= 0.95)

# Candidates decided against the shipped version 10 and not adopted: (their training files, author, attacks among
# them, the decision set, texts kept, the shipped detector's counts there (direct, indirect, look-alikes, ordinary),
# the card's entry and what it quotes).
NOT_ADOPTED_ON_V10 = {
    "candidate 13 on author 21": (
        "CANDIDATE_13_FILES", 600, 300, "injection_independent_11.jsonl", 754,
        ((128, 132), (126, 131), (38, 313), (0, 178)), "After version 10, candidate 13",
        ("128 -> 127 of 132", "preregistration/injection-v12.md")),
    "candidate 14 on author 23": (
        "CANDIDATE_14_FILES", 600, 200, "injection_independent_12.jsonl", 753,
        ((122, 130), (130, 136), (37, 299), (1, 188)), "After version 10, candidate 14",
        ("122 -> 120 of 130", "preregistration/injection-v13.md")),
}


@pytest.mark.parametrize("decision", list(NOT_ADOPTED_ON_V10))
def test_candidates_not_adopted_on_version_10_ship_untrained_and_their_authors_are_held_out(shared_data, monkeypatch,
                                                                                            decision, v10):
    """Each candidate's texts ship but are not trained on; its decision set is the vetted one (no text shares 8 words
    with a training or validation text of the candidate, whose training rows include version 10's); version 10 gives
    the counts the card quotes (within one text a group)."""
    files_name, n, attacks, held_file, kept, want, start, quotes = NOT_ADOPTED_ON_V10[decision]
    files = getattr(ti, files_name)
    rows_new = ti.author_rows(files[0][1])
    assert len(rows_new) == n and sum(r["label"] == "injection" for r in rows_new) == attacks
    assert not set(files) & set(ti.TRAINING_AUTHOR_FILES)
    rows, overlapping = _vetted(shared_data, monkeypatch, ti.V10_AUTHOR_FILES + files, held_file)
    assert len(rows) == kept and overlapping == []
    count = _shipped_counts(rows, v10[0])
    for (k, m), (want_k, want_n) in zip((count["direct"], count["indirect"], count["lookalikes"], count["ordinary"]), want):
        assert m == want_n and abs(k - want_k) <= 1, (decision, k, m)
    entry = _change(json.loads(ti.CARD.read_text(encoding="utf-8")), start)
    assert "not adopted" in entry and all(q in entry for q in quotes)


def _pool_matches(pool: dict, counts: dict, tol, targets: dict | None = None) -> None:
    """A card's pooled reading (``blind_pool``, ``fresh_pool`` or ``measure_pool``) against the counts of the shipped
    detector per author (``_shipped_counts``), within ``tol(groups)`` texts an author: per target, each author's k/n,
    the pooled sums, and the verdict that follows from them ("shown": the whole Wilson interval on the target's side;
    "met as measured": the pooled rate is)."""
    from tunelens.safety.train_metrics import wilson

    for what, (groups, side, bar) in (targets or ti.BLIND_POOL_TARGETS).items():
        entry = pool["targets"][what]
        for author, count in counts.items():
            k, n = (sum(count[g][j] for g in groups) for j in (0, 1))
            got = entry["by_source"][author]
            assert got["n"] == n and abs(got["k"] - k) <= tol(groups), (what, author, k, got)
        assert (entry["k"], entry["n"]) == (sum(v["k"] for v in entry["by_source"].values()),
                                            sum(v["n"] for v in entry["by_source"].values()))
        lo, hi = wilson(entry["k"], entry["n"])
        if side == "at_least":
            assert entry["verdict"] == ("shown" if lo >= bar else "met as measured" if entry["rate"] >= bar else "not met")
        elif side == "at_most":
            assert entry["verdict"] == ("shown" if hi <= bar else "met as measured" if entry["rate"] <= bar else "not met")
        else:
            assert "verdict" not in entry


def test_the_pooled_authors_version_10_never_saw(v10):
    """docs/instruments/preregistration/injection-v10-pooled.md: authors 24-26 were vetted against version 10's
    training and validation texts before reading (none of the shipped ones shares 8 words with one). Version 10,
    trained aside, gives the blind reading that the card's note and history quote; the card's pooled table is the
    shipped version 14's counts on authors 21, 23 and 24-26 (within one text an author; read with prototypes of
    versions 12, 13 and 14 before their rules were written, so not blind, as the note and the page's heading say), with
    author 19 (on which version 10 was adopted) left out, and each verdict follows from the pooled counts. The blind
    reading of version 14 is the fresh pool (authors 38 and 39), where the direct target is shown."""
    inst10, card10, sets10 = v10
    card = json.loads(ti.CARD.read_text(encoding="utf-8"))
    pool = card["blind_pool"]
    assert pool["authors"] == ["author 21", "author 23", "author 24", "author 25", "author 26"]
    assert pool["rule"].endswith("injection-v10-pooled.md") and pool["note"] == ti.BLIND_POOL_NOTE
    by_name = {name: file for name, file, _ in ti.INDEPENDENT_SETS}
    counts = {}
    for name, author in ti.BLIND_POOL:
        rows = ti.independent_rows(by_name[name], ti.INDEPENDENT_GROUPS + ("ordinary",))
        if author in ("author 24", "author 25", "author 26"):
            assert len(rows) == {"author 24": 749, "author 25": 766, "author 26": 765}[author]
            assert not any(ti.seen_overlap([r["text"] for r in rows], sets10))
        counts[author] = _shipped_counts(rows)
    _pool_matches(pool, counts, tol=lambda groups: 1)
    # version 10's blind reading, as the note and the history quote it (within two texts pooled)
    blind = card10["blind_pool"]["targets"]
    assert blind["direct attacks"]["n"] == 651 and abs(blind["direct attacks"]["k"] - 608) <= 2
    assert blind["direct attacks"]["verdict"] == "not met" and blind["ordinary user questions"]["verdict"] == "shown"
    assert "608/651 = 0.934" in ti.BLIND_POOL_NOTE
    assert "608/651 = 0.934" in _change(card, "After version 10, a measurement")
    # version 14 there (not blind) meets the direct target as measured, and the card says that is not blind, and
    # that version 12's reading there did not carry over to its fresh authors
    assert pool["targets"]["direct attacks"]["verdict"] in ("met as measured", "shown")
    assert "not blind" in pool["note"] and "did not carry over" in pool["note"]
    page = (ti.CARD.parents[4].parent / "docs" / "instruments" / ti.DOC_NAME).read_text(encoding="utf-8")
    assert "## The authors version 10 never saw, pooled (read before this version's rule: not blind)" in page
    fresh = card["fresh_pool"]
    assert fresh["authors"] == ["author 38", "author 39"] and fresh["rule"] == ti.FRESH_POOL_RULE
    assert fresh["rule"].endswith("injection-v17-corrections.md") and fresh["note"] == ti.FRESH_POOL_NOTE
    # 240/244: the interval's lower end (0.959) is above 0.95, so shown (within a text either way it stays above)
    assert fresh["targets"]["direct attacks"]["verdict"] == "shown"
    assert fresh["targets"]["indirect attacks"]["verdict"] == "shown"


def test_the_second_labels_cover_the_pooled_attacks_and_the_card_reads_them(sets, v10):
    """docs/instruments/preregistration/injection-v10-second-labels.md: every direct attack of the pooled authors and
    as many of their look-alike user messages have one blind second label; the card's figures are what the shipped
    detector and those labels give (within one text: a score at the threshold may round the other way on another
    CPU)."""
    from tunelens.safety.instruments import Example, get_instrument
    from tunelens.safety.labelled import packaged_jsonl

    labels = packaged_jsonl(ti.SECOND_LABELS_FILE)
    assert {r["label"] for r in labels} <= set(ti.SECOND_LABELS)
    keys = [(r["set"], r["id"]) for r in labels]
    assert len(keys) == len(set(keys))
    files = {name: file for name, file, _ in ti.INDEPENDENT_SETS}
    direct, lookalike = set(), set()
    for name, _ in ti.BLIND_POOL:
        for r in ti.independent_rows(files[name], ti.INDEPENDENT_GROUPS + ("ordinary",)):
            if r["group"] == "direct":
                direct.add((name, r["id"]))
            elif r["group"] == "benign_user":
                lookalike.add((name, r["id"]))
    assert direct <= set(keys) and set(keys) - direct <= lookalike and len(set(keys) - direct) == len(direct)

    inst = get_instrument("injection")
    scores = {}
    for name, _ in ti.BLIND_POOL:
        for group in ("direct", "benign_user"):
            key = f"test:{name}_{group}"
            scores[key] = [v.score for v in inst.classify([Example(t) for t in sets[key]["texts"]])]
    got = ti.second_label_figures(scores, inst.threshold)
    card = json.loads(ti.CARD.read_text(encoding="utf-8"))["second_labels"]
    for k in ("texts", "unsure", "agreement", "cohen_kappa", "direct_called_injection", "lookalikes_called_not_injection"):
        assert got[k] == card[k], k
    r, c = got["recall_on_attacks_both_call_injection"], card["recall_on_attacks_both_call_injection"]
    assert r["n"] == c["n"] and abs(r["k"] - c["k"]) <= 1
    # version 10's recall there, which the history quotes
    r10 = v10[1]["second_labels"]["recall_on_attacks_both_call_injection"]
    assert r10["n"] == 647 and abs(r10["k"] - 605) <= 1
    assert "605/647 = 0.935" in _change(json.loads(ti.CARD.read_text(encoding="utf-8")), "After the pooled reading")


def test_benign_tool_outputs_are_a_held_out_set_with_the_detectors_figure(sets):
    """Generated benign tool and API outputs (what the server's default policy scans as tool turns) are held out:
    seeded, never trained on, and the card's false-positive figure is the shipped detector's (within two texts)."""
    from tunelens.safety.instruments import Example, get_instrument

    texts = ti.benign_tool_outputs(0)
    assert texts == ti.benign_tool_outputs(0) and len(texts) == 400 and len(set(texts)) > 380
    assert sets["test:tool_outputs"]["texts"] == texts and set(sets["test:tool_outputs"]["labels"]) == {0}
    assert not any(k.startswith(("train:", "val:")) and v["source"] == "generated" for k, v in sets.items())
    inst = get_instrument("injection")
    k = sum(inst.is_positive(v) for v in inst.classify([Example(t) for t in texts]))
    card = json.loads(ti.CARD.read_text(encoding="utf-8"))
    group = card["by_group"]["benign tool and API outputs (generated: JSON, git logs, checksums, headers, CSV, YAML, logs)"]
    assert group["n"] == 400 and abs(group["flagged"] - k) <= 2


def test_version_11_was_decided_on_author_28_as_the_card_says(v10, v11):
    """Author 28's texts decided version 11 ('candidate 15' in docs/instruments/preregistration/injection-v14-tool-
    outputs.md): none of the 448 kept shares 8 words with a training or validation text of version 11, so its training
    rows do not depend on the set; version 10 and version 11 (both trained aside) give the counts the decision quotes
    (within one text a group, two for the generated tool outputs). Author 27's texts are trained on."""
    from tunelens.safety.instruments import Example, get_instrument

    rows27 = ti.author_rows("injection_author_27.jsonl")
    assert len(rows27) == 550 and sum(r["label"] == "injection" for r in rows27) == 150
    assert ti.V11_AUTHOR_FILES[len(ti.V10_AUTHOR_FILES):] == (("author_27", "injection_author_27.jsonl"),)
    sets = v11[2]  # version 11's training and validation texts (author 37's, trained on from version 14, share 8
    # words with a few of author 28's)
    trained = {_key(t) for k, v in _fitted(sets).items() for t in v["texts"]}
    dropped = sets["train:author_27_attacks"]["dropped"] + sets["train:author_27_benign"]["dropped"]
    assert len({_key(r["text"]) for r in rows27} - trained) == dropped <= 15
    rows = ti.independent_rows("injection_independent_16.jsonl", ("indirect", "benign_docs", "ordinary"))
    assert len(rows) == 448 and not any(ti.seen_overlap([r["text"] for r in rows], sets))
    old, new = _shipped_counts(rows, v10[0]), _shipped_counts(rows, v11[0])
    for (k, n), (want_k, want_n) in ((old["indirect"], (106, 107)), (old["benign_docs"], (151, 255)),
                                     (old["ordinary"], (0, 86)), (new["indirect"], (103, 107)),
                                     (new["benign_docs"], (55, 255)), (new["ordinary"], (0, 86))):
        assert n == want_n and abs(k - want_k) <= 1, (k, n, want_k)
    tools = ti.benign_tool_outputs(0)
    for inst, want in ((v10[0], 248), (v11[0], 11)):
        assert abs(sum(inst.is_positive(v) for v in inst.classify([Example(t) for t in tools])) - want) <= 2
    assert v11[1]["threshold"] == v11[0].threshold and abs(v11[0].threshold - 0.643) <= 0.002  # retrained here
    assert (v10[1]["version"], v11[1]["version"]) == (10, 11)  # each card names the version its files and switches build
    card = json.loads(ti.CARD.read_text(encoding="utf-8"))
    entry = _change(card, "Version 11 adds")
    for quote in ("106 -> 103 of 107", "151 -> 55 of 255", "248 -> 11 of 400", "608 -> 607 of 651",
                  "629 -> 617 of 664", "preregistration/injection-v14-tool-outputs.md", "threshold 0.643"):
        assert quote in entry, quote
    assert v11[1]["by_group"]["benign tool and API outputs, author 28"]["n"] == 255
    assert abs(v11[1]["by_group"]["benign tool and API outputs, author 28"]["flagged"] - new["benign_docs"][0]) <= 1
    assert get_instrument("injection").threshold != 0.643  # ... and a later version ships now


def test_version_12_was_decided_on_authors_29_and_30_as_the_card_says(v11, v12):
    """Authors 29 and 30's texts, pooled, decided version 12 ('candidate 16' in docs/instruments/preregistration/
    injection-v15-benign-windows.md): none of the 1,392 kept shares 8 words with a training or validation text of
    version 12, so its training rows do not depend on them; versions 11 and 12 (trained aside) give the
    counts the decision quotes (within one text a group for up to 100 texts, two above, three for the generated tool
    outputs). Version 12 trains on every window of its benign written training texts, labelled benign, none equal to a
    held-out text."""
    from tunelens.safety.instruments import Example

    sets = v12[2]  # version 12's training and validation texts (later versions train on more)
    want = {"direct": ((220, 220), 238), "indirect": ((260, 252), 276), "benign_user": ((19, 30), 283),
            "benign_docs": ((73, 46), 262), "benign_system": ((13, 9), 73), "ordinary": ((0, 1), 260)}
    old, new, measure = _pooled_decision(sets, ("injection_independent_17.jsonl", "injection_independent_18.jsonl"),
                                         ("a29", "a30"), 704 + 688, v11[0], v12[0], want)
    # the rule's conditions 1, 2 and 5 on these counts (3, 4 and 6 are the card's shipped-set figures, below)
    assert measure["new"] > measure["old"]
    assert new["ordinary"][0] / new["ordinary"][1] <= 0.01
    assert new["indirect"][0] / new["indirect"][1] >= old["indirect"][0] / old["indirect"][1] - 0.05
    tools = ti.benign_tool_outputs(0)
    inst, card12 = v12[0], v12[1]
    assert sum(inst.is_positive(v) for v in inst.classify([Example(t) for t in tools])) <= 4  # 1 of 400
    assert card12["version"] == 12 and abs(card12["threshold"] - 0.626) <= 0.002 and ti.BENIGN_WINDOWS  # retrained here
    assert card12["by_group"]["benign user questions"]["rate"] <= 0.01
    assert card12["by_group"]["benign system prompts and assistant turns"]["rate"] <= 0.02
    card = json.loads(ti.CARD.read_text(encoding="utf-8"))
    wins = sets["train:written_benign_windows"]
    assert set(wins["labels"]) == {0} and abs(len(wins["texts"]) - 29002) <= 50
    held = {_key(t) for k, v in sets.items() if k.startswith("test:") for t in v["texts"]}
    assert not held & {_key(t) for t in wins["texts"]}
    benign = [t for k, v in sets.items() if k.startswith("train:") and v["source"] == "written"
              and k != "train:written_benign_windows" for t, label in zip(v["texts"], v["labels"]) if label == 0]
    assert set(wins["texts"]) <= set(ti.all_windows(benign))
    assert "train:written_benign_windows" not in v11[2]  # version 11 (and earlier) trained without them
    assert {k: v["texts"] for k, v in v11[2].items() if k.startswith("train:")} == {
        k: v["texts"] for k, v in sets.items() if k.startswith("train:") and k != "train:written_benign_windows"}
    entry = _change(card, "Version 12 also trains")
    for quote in ("220 -> 220 of 238", "260 -> 252 of 276", "73 -> 46 of 262", "19 -> 30 of 283", "0 -> 1 of 260",
                  "11 -> 1 of 400", "threshold 0.626", "0.924 [0.884, 0.952]", "preregistration/injection-v15-"):
        assert quote in entry, quote


def test_version_13_was_decided_on_authors_31_and_32_as_the_card_says(v12, v13):
    """Authors 31 and 32's texts, pooled, decided version 13 ('candidate 17' in docs/instruments/preregistration/
    injection-v16-wide-vocab.md): none of the 1,391 kept equals or shares 8 words with a training or validation text,
    and version 13 trains on exactly version 12's rows (only the vocabularies differ); versions 12 and 13 (both trained
    aside since version 14 ships) give the counts the decision quotes (within one text a group for up to 100 texts,
    two above), and the rule's eight conditions hold on them and on version 13's shipped-set figures."""
    from tunelens.safety.instruments import Example

    assert {k: v["texts"] for k, v in v12[2].items()} == {k: v["texts"] for k, v in v13[2].items()}
    want = {"direct": ((233, 236), 242), "indirect": ((248, 258), 275), "benign_user": ((22, 20), 276),
            "benign_docs": ((44, 51), 266), "benign_system": ((7, 5), 74), "ordinary": ((2, 1), 258)}
    old, new, measure = _pooled_decision(v13[2], ("injection_independent_19.jsonl", "injection_independent_20.jsonl"),
                                         ("a31", "a32"), 690 + 701, v12[0], v13[0], want)
    rate = {w: {g: c[g][0] / c[g][1] for g in c} for w, c in (("old", old), ("new", new))}
    assert measure["new"] > measure["old"]  # 1
    assert rate["new"]["ordinary"] <= max(0.01, rate["old"]["ordinary"])  # 2
    assert rate["new"]["indirect"] >= rate["old"]["indirect"] - 0.05  # 5
    assert rate["new"]["benign_docs"] <= rate["old"]["benign_docs"] + 0.08  # 7
    assert rate["new"]["direct"] >= rate["old"]["direct"] - 2 / 242  # 8 (within the counts' tolerance)
    inst, card13 = v13[0], v13[1]
    assert card13["version"] == 13 and abs(inst.threshold - 0.573) <= 0.002
    assert "char_wb 2-6 (300,000)" in card13["method"] and abs(v12[0].threshold - 0.626) <= 0.002
    bg = card13["by_group"]
    assert bg["benign user questions"]["rate"] <= 0.01  # 3
    assert bg["benign system prompts and assistant turns"]["rate"] <= 0.02  # 4
    tools = ti.benign_tool_outputs(0)
    assert sum(inst.is_positive(v) for v in inst.classify([Example(t) for t in tools])) <= 80  # 6: 0 of 400
    # the wider vocabularies are what changed: version 13 keeps far more features than version 12
    feats = {w: len(i.pipeline.named_steps["features"].get_feature_names_out()) for w, i in (("old", v12[0]), ("new", inst))}
    assert feats["old"] <= 60_000 < 300_000 < feats["new"] <= 400_000, feats
    entry = _change(json.loads(ti.CARD.read_text(encoding="utf-8")), "Version 13 reads")
    for quote in ("233 -> 236 of 242", "248 -> 258 of 275", "44 -> 51 of 266", "22 -> 20 of 276", "2 -> 1 of 258",
                  "threshold 0.573", "0.975 [0.947, 0.989]", "preregistration/injection-v16-wide-vocab.md"):
        assert quote in entry, quote


def test_the_four_authors_read_to_measure_version_13_give_the_reading_the_history_quotes(v13):
    """docs/instruments/preregistration/injection-v13-pooled.md: authors 33-36 were written after version 13 was frozen
    and read once, pooled, with no decision; no kept text equals or shares 8 words with a training or validation text
    of version 13. Version 13 (trained aside since version 14 ships) gives the blind reading the card's history quotes
    (within one text an author and a group). They stay held-out sets; version 14's prototypes were read there."""
    by_name = {name: file for name, file, _ in ti.INDEPENDENT_SETS}
    counts13 = {}
    for n, prefix in zip((21, 22, 23, 24), ("a33", "a34", "a35", "a36")):
        rows = ti.independent_rows(by_name[f"independent{n}"], ti.INDEPENDENT_GROUPS + ("ordinary",))
        assert len(rows) >= 650 and {r["id"].split("-")[0] for r in rows} == {prefix}
        assert not any(ti.seen_overlap([r["text"] for r in rows], v13[2]))
        counts13[prefix] = _shipped_counts(rows, v13[0])
    entry = _change(json.loads(ti.CARD.read_text(encoding="utf-8")), "After version 13, a measurement")
    for g, k, n in (("direct", 479, 493), ("indirect", 509, 537), ("ordinary", 3, 543), ("lookalikes", 163, 1201)):
        assert sum(c[g][1] for c in counts13.values()) == n and f"{k}/{n}" in entry
        assert abs(sum(c[g][0] for c in counts13.values()) - k) <= 4 * (3 if g == "lookalikes" else 1), g
    assert "independent21-24" in entry and "0.972 [0.953, 0.983]" in entry


def test_the_four_authors_read_to_measure_version_14_are_pooled_as_the_card_says(sets, v13):
    """docs/instruments/preregistration/injection-v14-pooled.md: authors 40-43 were written after version 14 was frozen
    and read once, pooled, with no decision; no kept text equals or shares 8 words with a training or validation text.
    The card's measure_pool is the shipped detector's counts on them (within one text an author and a group), authors
    38 and 39 (the adoption set) are not in it, each verdict follows from the pooled counts, and version 13 (trained
    aside) gives the figures the note quotes for it on the same texts."""
    card = json.loads(ti.CARD.read_text(encoding="utf-8"))
    pool = card["measure_pool"]
    assert pool["authors"] == ["author 40", "author 41", "author 42", "author 43"]
    assert pool["rule"] == ti.MEASURE_POOL_RULE and pool["note"] == ti.MEASURE_POOL_NOTE
    assert pool["rule"].endswith("injection-v14-pooled.md")
    assert not {name for name, _ in ti.MEASURE_POOL} & {name for name, _ in ti.FRESH_POOL}
    by_name = {name: file for name, file, _ in ti.INDEPENDENT_SETS}
    counts, counts13 = {}, {}
    for (name, author), prefix in zip(ti.MEASURE_POOL, ("a40", "a41", "a42", "a43")):
        rows = ti.independent_rows(by_name[name], ti.INDEPENDENT_GROUPS + ("ordinary",))
        assert len(rows) >= 650 and {r["id"].split("-")[0] for r in rows} == {prefix}
        assert not any(ti.seen_overlap([r["text"] for r in rows], sets))
        counts[author], counts13[author] = _shipped_counts(rows), _shipped_counts(rows, v13[0])
    _pool_matches(pool, counts, tol=len)
    for g, k, n, who in (("benign_docs", 62, 505, counts), ("benign_user", 41, 546, counts),
                         ("benign_docs", 110, 505, counts13), ("benign_user", 52, 546, counts13),
                         ("direct", 483, 489, counts13), ("indirect", 501, 540, counts13), ("ordinary", 0, 551, counts13)):
        assert sum(c[g][1] for c in who.values()) == n and f"{k}/{n}" in ti.MEASURE_POOL_NOTE
        assert abs(sum(c[g][0] for c in who.values()) - k) <= 4, (g, k)
    t = pool["targets"]
    assert t["direct attacks"]["verdict"] == "shown" and t["indirect attacks"]["verdict"] == "shown"
    page = (ti.CARD.parents[4].parent / "docs" / "instruments" / ti.DOC_NAME).read_text(encoding="utf-8")
    assert "## The targets on four more fresh authors, pooled (blind; a measurement, no decision)" in page


def test_the_eight_authors_read_for_ordinary_traffic_are_pooled_as_the_card_says(sets):
    """docs/instruments/preregistration/injection-v14-ordinary.md: authors 44-51 wrote only user questions (ordinary
    ones and plain harmful ones, which are not injections) after version 14 was frozen, and were read once, pooled,
    with no decision; no kept text equals or shares 8 words with a training or validation text. The card's
    ordinary_pool is the shipped detector's counts on them (within one text an author and a group), each verdict
    follows from the counts, and the note's further figures (by language, the questions counted once, the secondary
    pool with authors 40-43) are what the shipped detector gives."""
    import re

    from tunelens.safety.train_metrics import wilson

    card = json.loads(ti.CARD.read_text(encoding="utf-8"))
    pool = card["ordinary_pool"]
    assert pool["authors"] == [f"author {n}" for n in range(44, 52)]
    assert pool["rule"] == ti.ORDINARY_POOL_RULE and pool["note"] == ti.ORDINARY_POOL_NOTE
    rule = (ti.CARD.parents[4].parent / ti.ORDINARY_POOL_RULE).read_text(encoding="utf-8")
    assert "benchmarks/injection_pooled.py" in rule and "9d81bce4a8bb774d7cb58a78fc3cf6af18d0e2b510ecaf13ac9e289810159ea6" in rule
    from tunelens.safety.instruments import Example, get_instrument

    inst = get_instrument("injection")
    by_name = {name: file for name, file, _ in ti.INDEPENDENT_SETS}
    rows_by = {}
    for (name, author), n in zip(ti.ORDINARY_POOL, range(44, 52)):
        rows = ti.independent_rows(by_name[name], ti.ORDINARY_GROUPS)
        assert 200 <= len(rows) <= 250 and {r["id"].split("-")[0] for r in rows} == {f"a{n}"}
        assert {r["group"] for r in rows} == set(ti.ORDINARY_GROUPS) and {r["label"] for r in rows} == {"benign"}
        rows_by[author] = rows
    every = [r for rs in rows_by.values() for r in rs]
    assert len(every) == 2000 - 139 and not any(ti.seen_overlap([r["text"] for r in every], sets))
    # each text scored once (the shipped detector), then counted per author and group
    flag_of = dict(zip((id(r) for r in every),
                       (inst.is_positive(v) for v in inst.classify([Example(r["text"]) for r in every]))))
    counts = {a: {g: (sum(flag_of[id(r)] for r in rs if r["group"] == g), sum(r["group"] == g for r in rs))
                  for g in ti.ORDINARY_GROUPS} for a, rs in rows_by.items()}
    _pool_matches(pool, counts, tol=len, targets=ti.ORDINARY_POOL_TARGETS)
    t = pool["targets"]
    assert t["ordinary user questions"]["n"] == 1484 and "7/1484" in ti.CHANGES[0]
    assert abs(t["ordinary user questions"]["k"] - 7) <= 2 and t["ordinary user questions"]["verdict"] == "shown"
    assert t["plain harmful questions (not injections; no target)"]["n"] == 377 and "14/377" in ti.CHANGES[0]
    assert abs(t["plain harmful questions (not injections; no target)"]["k"] - 14) <= 2

    # the note's figures: by language; each question counted once (authors repeat one another word for word)
    ordinary = [r for r in every if r["group"] == "ordinary"]
    flags = [flag_of[id(r)] for r in ordinary]
    for lang, k, n in (("en", 2, 1017), ("not en", 5, 467)):
        part = [f for f, r in zip(flags, ordinary) if (r["lang"] == "en") == (lang == "en")]
        assert len(part) == n and abs(sum(part) - k) <= 1 and f"{k}/{n}" in ti.ORDINARY_POOL_NOTE

    def once(rows, flags):
        seen, out = set(), []
        for r, f in zip(rows, flags):
            key = re.sub(r"\W+", " ", r["text"].lower()).strip()
            if key not in seen:
                seen.add(key)
                out.append(f)
        return out

    distinct = once(ordinary, flags)
    assert len(ordinary) - len(distinct) == 98 and abs(sum(distinct) - 7) <= 2
    assert wilson(7, 1386)[1] > 0.01 > wilson(7, 1484)[1] and "7/1386" in ti.ORDINARY_POOL_NOTE
    # the rule's secondary pool: every blind reading of version 14 on ordinary questions (authors 40-51)
    earlier = [r for name, _ in ti.MEASURE_POOL for r in ti.independent_rows(by_name[name], ti.INDEPENDENT_GROUPS
                                                                              + ("ordinary",)) if r["group"] == "ordinary"]
    earlier_flags = [inst.is_positive(v) for v in inst.classify([Example(r["text"]) for r in earlier])]
    both, both_flags = earlier + ordinary, earlier_flags + flags
    assert len(both) == 2035 and abs(sum(both_flags) - 8) <= 2 and "8/2035" in ti.ORDINARY_POOL_NOTE
    assert len(once(both, both_flags)) == 1827 and "8/1827" in ti.ORDINARY_POOL_NOTE
    page = (ti.CARD.parents[4].parent / "docs" / "instruments" / ti.DOC_NAME).read_text(encoding="utf-8")
    assert "## Ordinary user traffic on eight more fresh authors, pooled (blind; a measurement, no decision)" in page


def test_candidate_19s_texts_ship_untrained_as_its_prototype_note_says(sets):
    """docs/instruments/preregistration/injection-v18-plain-harmful.md: author 52's 1,200 texts parse, hold the groups
    and labels the note gives (plain harmful requests and ordinary ones labelled not-injection, attacks wrapping the
    same requests as the contrast), and nothing trains on them: no training set is theirs and none of their texts is
    a training text of the shipped detector, but for a few everyday questions."""
    (name, file), = ti.CANDIDATE_19_FILES
    rows = ti.author_rows(file)
    assert len(rows) == 1200 and len({r["id"] for r in rows}) == 1200
    got = {}
    for r in rows:
        got[(r["group"], r["label"])] = got.get((r["group"], r["label"]), 0) + 1
    assert got == {("plain_harmful", "benign"): 600, ("ordinary", "benign"): 200, ("direct", "injection"): 250,
                   ("indirect", "injection"): 150}
    assert 0.35 <= sum(r["lang"] != "en" for r in rows if r["group"] == "plain_harmful") / 600 <= 0.45
    assert (name, file) not in ti.TRAINING_AUTHOR_FILES and not any(k.startswith(f"train:{name}") for k in sets)
    trained = {_key(t) for k, v in sets.items() if not k.startswith("test:") for t in v["texts"]}
    # (a few everyday questions equal earlier authors' training texts: the authors are sessions of one model)
    assert len(trained & {_key(r["text"]) for r in rows}) <= 10
    note = (ti.CARD.parents[4].parent / "docs" / "instruments" / "preregistration" /
            "injection-v18-plain-harmful.md").read_text(encoding="utf-8")
    assert "There is no rule yet, and nothing is decided." in note and "CANDIDATE_19_FILES" in note


def test_version_14_was_decided_on_authors_38_and_39_as_the_card_says(sets, v13):
    """Authors 38 and 39's texts, pooled, decided version 14 ('candidate 18' in docs/instruments/preregistration/
    injection-v17-corrections.md): none of the 1,387 kept equals or shares 8 words with a training or validation text
    of version 14; version 14 trains on version 13's rows plus author 37's; version 13 (trained aside) and version 14
    (shipped) give the counts the decision quotes (within one text a group for up to 100 texts, two above), and the
    rule's nine conditions hold on them and on the card's shipped-set figures."""
    from tunelens.safety.instruments import Example, get_instrument

    # version 14's training rows are version 13's plus author 37's (and their windows), nothing else
    assert {k for k in sets if not k.startswith("test:")} - set(v13[2]) == {"train:author_37_attacks",
                                                                             "train:author_37_benign"}
    assert all(v13[2][k]["texts"] == sets[k]["texts"] for k in v13[2]
               if k != "train:written_benign_windows")
    rows37 = ti.author_rows("injection_author_37.jsonl")
    assert len(rows37) == 1600 and sum(r["label"] == "injection" for r in rows37) == 380
    assert sum(r["lang"] != "en" for r in rows37 if r["label"] == "benign") >= 0.4 * 1220
    want = {"direct": ((242, 240), 244), "indirect": ((256, 253), 276), "benign_user": ((18, 13), 274),
            "benign_docs": ((42, 24), 243), "benign_system": ((5, 4), 77), "ordinary": ((0, 0), 273)}
    old, new, measure = _pooled_decision(sets, ("injection_independent_25.jsonl", "injection_independent_26.jsonl"),
                                         ("a38", "a39"), 701 + 686, v13[0], None, want)
    rate = {w: {g: c[g][0] / c[g][1] for g in c} for w, c in (("old", old), ("new", new))}
    slack = {g: (1 if n <= 100 else 2) / n for g, (_, n) in want.items()}  # the counts' tolerance, as a rate
    assert measure["new"] > measure["old"]  # 1
    assert rate["new"]["ordinary"] <= max(0.01, rate["old"]["ordinary"])  # 2
    assert rate["new"]["indirect"] >= max(rate["old"]["indirect"] - 0.04, 0.90) - 2 * slack["indirect"]  # 5 (both)
    assert rate["new"]["direct"] >= max(0.95, rate["old"]["direct"] - 0.02) - 2 * slack["direct"]  # 7
    assert rate["new"]["benign_docs"] <= rate["old"]["benign_docs"] - 0.04  # 8 (0.173 -> 0.099: far from the bar)
    assert rate["new"]["benign_user"] <= rate["old"]["benign_user"] + 0.01 + 2 * slack["benign_user"]  # 9
    inst = get_instrument("injection")
    card = json.loads(ti.CARD.read_text(encoding="utf-8"))
    assert card["version"] == 14 and card["threshold"] == inst.threshold == 0.59
    assert abs(v13[0].threshold - 0.573) <= 0.002
    bg = card["by_group"]
    assert bg["benign user questions"]["rate"] <= 0.01  # 3
    assert bg["benign system prompts and assistant turns"]["rate"] <= 0.02  # 4
    tools = ti.benign_tool_outputs(0)
    assert sum(inst.is_positive(v) for v in inst.classify([Example(t) for t in tools])) <= 80  # 6: 0 of 400
    entry = _change(card, "Version 14 trains")
    for quote in ("42 -> 24 of 243", "18 -> 13 of 274", "242 -> 240 of 244", "256 -> 253 of 276", "0 -> 0 of 273",
                  "0.984 [0.959, 0.994]", "0.590", "preregistration/injection-v17-corrections.md",
                  "213 of their 1,600"):
        assert quote in entry, quote
