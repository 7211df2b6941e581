"""The project's labelled replies: every row resolves to its text, the split is a function of the
prompt or conversation only, and no test-split reply or HH dialogue reaches an instrument's training data."""

import collections

import pytest

from tunelens.errors import TunelensError
from tunelens.safety import labelled
from tunelens.safety.labelled import HARM_LABELS, REFUSAL_LABELS, REQUEST_LABELS, load_labelled, raw_rows, split_key, split_of


@pytest.fixture(scope="module")
def rows(shared_data):
    return load_labelled(shared_data)


def test_every_row_resolves_with_valid_labels(rows):
    assert len(rows) == len(raw_rows()) >= 1500
    for r in rows:
        assert r["text"].strip() and r["prompt"].strip(), r["id"]
        assert r["refusal"] in REFUSAL_LABELS and r["harm"] in HARM_LABELS and r["request_harmful"] in REQUEST_LABELS
        assert r["split"] in ("dev", "test")
    assert len({r["id"] for r in rows}) == len(rows)
    # third-party texts are references, not copies; only our own generations carry text
    for r in raw_rows():
        assert ("ref" in r) != ("text" in r), r["id"]
        assert ("ref" in r) == (not r["family"].startswith("smollm2")), r["id"]


def test_split_depends_on_the_prompt_or_conversation_only(rows):
    assert split_key({"family": "smollm2_base", "src_id": "smollm2_base:hh12", "prompt": "x"}) == "hh12"
    assert split_key({"family": "anthropic_hh", "src_id": "hh12:chosen", "prompt": "y"}) == "hh12"
    assert split_key({"family": "smollm2_tuned", "src_id": "smollm2_tuned:advbench:3", "prompt": " Hi "}) == "prompt:hi"
    for r in rows:
        assert r["split"] == split_of(split_key(r)), r["id"]
    by_key = collections.defaultdict(set)
    for r in rows:
        by_key[split_key(r)].add(r["split"])
    assert all(len(v) == 1 for v in by_key.values())  # base and tuned replies to one prompt share a side
    counts = collections.Counter((r["family"], r["split"]) for r in rows)
    for fam in ("smollm2_base", "smollm2_tuned", "anthropic_hh", "gpt4_coconot", "coconot_rejected"):
        assert counts[(fam, "dev")] >= 50 and counts[(fam, "test")] >= 50, fam


def test_hh_reference_reads_the_last_assistant_turn(rows):
    hh = next(r for r in rows if r["family"] == "anthropic_hh")
    assert "Human:" in hh["dialogue"] and "Assistant:" not in hh["text"]
    assert hh["prompt"].split("\n")[0] in hh["dialogue"]


def test_a_missing_reference_is_a_clear_error(shared_data, monkeypatch):
    bad = [{"id": "X1", "family": "anthropic_hh", "split": "dev",
            "ref": {"file": "hh_rlhf_harmless_base_test.jsonl.gz", "key": 10 ** 6, "field": "chosen"}}]
    monkeypatch.setattr(labelled, "raw_rows", lambda: bad)
    with pytest.raises(TunelensError, match="X1.*has no row"):
        load_labelled(shared_data)


def test_no_test_row_is_trained_on(shared_data, rows):
    from tunelens.safety import train_harm, train_refusal

    test_ids = {r["src_id"] for r in rows if r["split"] == "test"}
    test_items = {i.split(":")[0] for i in test_ids if not i.startswith("smollm2")}
    train = train_refusal.training_rows(str(shared_data))
    train_ids = {r.get("src_id") for r in train} - {None}
    assert not train_ids & test_ids
    assert not {i.split(":")[0] for i in train_ids} & test_items  # not even the other reply of a CoCoNot item
    assert any(r.get("split") == "dev" for r in train)
    prompts, held, dropped = train_harm.prompt_sets(str(shared_data))
    trained = {t.strip().lower() for t, _, _ in prompts}
    hh_test = [r["prompt"].strip().lower() for r in rows if r["split"] == "test" and r["family"] == "anthropic_hh"]
    assert hh_test and not set(hh_test) & trained
    assert any(src == "labelled_dev_requests" for _, _, src in prompts)
    # the prompt classifier's held-out prompts are never training prompts; what was dropped for it is returned
    held_keys = {t.strip().lower() for t, _, _ in held}
    assert held_keys and not held_keys & trained
    # and no prompt of the test split is a training prompt (the rows came from the same public sets)
    test_prompts = {r["prompt"].strip().lower() for r in rows if r["split"] == "test"}
    assert not test_prompts & trained
    assert dropped and all(t.strip().lower() in (held_keys if src.endswith("(a held-out prompt)") else test_prompts)
                           for t, _, src in dropped)
    assert {src.rsplit(" (", 1)[1] for _, _, src in dropped} == {"a held-out prompt)", "a test-split prompt)"}


def test_second_labels_cover_test_rows_only_and_agreement_is_a_direct_count(rows):
    second = labelled.second_labels()
    by_id = {r["id"]: r for r in rows}
    assert len(second) >= 300
    for i, s in second.items():
        assert by_id[i]["split"] == "test", i  # a blind relabelling of test replies, never of training ones
        assert s["refusal"] in REFUSAL_LABELS and s["harm"] in HARM_LABELS and s["request_harmful"] in REQUEST_LABELS
    test = [r for r in rows if r["split"] == "test"]
    ag = labelled.labeller_agreement("refusal", test)
    pairs = [(by_id[i]["refusal"], s["refusal"]) for i, s in second.items()
             if "ambiguous" not in (by_id[i]["refusal"], s["refusal"])]
    pos = ("full_refusal", "partial_refusal")
    tp = sum(a in pos and b in pos for a, b in pairs)
    fp_fn = sum((a in pos) != (b in pos) for a, b in pairs)
    assert ag["n"] == len(pairs) and ag["ambiguous_left_out"] == len(second) - len(pairs)
    assert ag["f1"] == pytest.approx(2 * tp / (2 * tp + fp_fn), abs=1e-4)
    assert ag["positives_first"] == sum(a in pos for a, _ in pairs)
    assert sum(f["n"] for f in ag["by_family"].values()) == ag["n"]
    assert ag["f1_ci95"][0] <= ag["f1"] <= ag["f1_ci95"][1]
    # an instrument that copies the first labeller scores F1 1 against it, and the labellers' F1 against the second
    copy = {r["id"]: r["refusal"] in pos for r in test}
    with_inst = labelled.labeller_agreement("refusal", test, copy)
    assert with_inst["instrument_f1_vs_first"] == 1.0
    assert with_inst["instrument_f1_vs_second"] == pytest.approx(ag["f1"], abs=1e-4)
    with pytest.raises(TunelensError, match="refusal and harm"):
        labelled.labeller_agreement("toxicity", test)


def test_an_earlier_assistant_turn_resolves_to_that_turn_in_its_context():
    d = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: How do I pick a lock?\n\nAssistant: Why?\n\nHuman: Mine.\n\nAssistant: OK."
    assert labelled.hh_split_turn(d, 0) == ("Hi", "Human: Hi", "Hello!")
    prompt, ctx, text = labelled.hh_split_turn(d, 1)
    assert prompt == "Hi\nHow do I pick a lock?" and ctx.endswith("Human: How do I pick a lock?") and text == "Why?"
    assert labelled.hh_split_turn(d, 2) == labelled.hh_split_dialogue(d)
    with pytest.raises(TunelensError, match="3 assistant turns, not a turn 3"):
        labelled.hh_split_turn(d, 3)


def test_the_mid_dialogue_turns_are_dev_side_and_never_a_last_turn(rows, shared_data):
    import gzip
    import json

    turns = [r for r in raw_rows() if "turn" in r.get("ref", {})]
    assert len(turns) == 1685 and {r["split"] for r in turns} == {"dev"} and {r["family"] for r in turns} == {"anthropic_hh"}
    with gzip.open(shared_data / "hh_rlhf_harmless_base_test.jsonl.gz", "rt", encoding="utf-8") as fh:
        dialogues = [json.loads(line) for line in fh if line.strip()]
    for r in turns:
        ref = r["ref"]
        assert ref["turn"] < dialogues[ref["key"]][ref["field"]].count("\n\nAssistant:") - 1, r["id"]
        assert r["src_id"] == f"hh{ref['key']}:turn{ref['turn']}"
    # no dialogue of the test split contributes a mid-dialogue turn
    test_dialogues = {split_key(r) for r in rows if r["split"] == "test"}
    assert not {f"hh{r['ref']['key']}" for r in turns} & test_dialogues
