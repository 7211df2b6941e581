"""The built-in suite: determinism, split disjointness, record shape, spans, CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tunelens.errors import TunelensError
from tunelens.records import parse_record
from tunelens.suite import FAMILIES, HELDOUT_FAMILIES, TRAINED_FAMILIES, eval_items, generate_suite, score


@pytest.fixture(scope="module")
def suite():
    return generate_suite(600, 0)


def _prompt(rec):
    return rec["messages"][0]["content"]


def test_deterministic_for_a_seed(suite):
    again = generate_suite(600, 0)
    assert json.dumps(suite, sort_keys=True) == json.dumps(again, sort_keys=True)
    other = generate_suite(600, 1)
    assert [_prompt(r) for r in other["train"]] != [_prompt(r) for r in suite["train"]]


def test_split_sizes_and_every_family_present(suite):
    assert {k: len(v) for k, v in suite.items()} == {"train": 420, "test": 90, "heldout": 90}
    assert {r["meta"]["family"] for r in suite["train"]} == set(TRAINED_FAMILIES)
    assert {r["meta"]["family"] for r in suite["test"]} == set(TRAINED_FAMILIES)
    assert {r["meta"]["family"] for r in suite["heldout"]} == set(HELDOUT_FAMILIES)


def test_no_instance_shared_between_splits(suite):
    train = {_prompt(r) for r in suite["train"]}
    test = {_prompt(r) for r in suite["test"]}
    heldout = {_prompt(r) for r in suite["heldout"]}
    assert not train & test and not train & heldout and not test & heldout
    ids = [r["id"] for recs in suite.values() for r in recs]
    assert len(ids) == len(set(ids))


def test_heldout_families_never_trained(suite):
    trained = {r["meta"]["family"] for r in suite["train"]}
    assert not trained & {r["meta"]["family"] for r in suite["heldout"]}
    assert set(HELDOUT_FAMILIES) and not set(HELDOUT_FAMILIES) & trained


def test_test_uses_trained_templates_only(suite):
    train_templates = {r["meta"]["template_id"] for r in suite["train"]}
    assert {r["meta"]["template_id"] for r in suite["test"]} <= train_templates


def test_disjoint_across_sizes():
    """Evaluation may draw a test set of another size from the same seed: still no overlap with train."""
    big_train = {_prompt(r) for r in generate_suite(1500, 3)["train"]}
    small_eval = eval_items(200, 3)
    assert not big_train & {_prompt(r) for r in small_eval}
    small_train = generate_suite(200, 3)["train"]
    # the smaller suite's train records are a prefix-by-family of the bigger one's
    assert {_prompt(r) for r in small_train} <= big_train


def test_safety_test_pairs_are_unseen_topics(suite):
    train_pairs = {r["meta"]["pair"] for r in suite["train"] if r["meta"]["family"] == "safety"}
    test_pairs = {r["meta"]["pair"] for r in suite["test"] if r["meta"]["family"] == "safety"}
    assert test_pairs and not train_pairs & test_pairs
    kinds = {r["meta"]["safety"] for r in suite["train"] if r["meta"]["family"] == "safety"}
    assert kinds == {"harmful", "benign"}


def test_records_are_canonical_with_provenance_and_spans(suite):
    for split, recs in suite.items():
        for rec in recs:
            parse_record(rec)  # validates against the canonical model
            prov, meta = rec["provenance"], rec["meta"]
            assert prov["source"] == "tunelens-suite" and prov["license"] == "Apache-2.0"
            assert f"family:{meta['family']}" in prov["tags"] and f"checker:{meta['checker']}" in prov["tags"]
            assert meta["split"] == split and meta["family"] in FAMILIES
            user = _prompt(rec)
            i0, i1 = meta["instruction_span"]
            assert 0 <= i0 < i1 <= len(user)
            assert user[i0:i1] == user[i0:i1].strip() and len(user[i0:i1].split()) >= 2
            if meta["context_span"] is not None:
                c0, c1 = meta["context_span"]
                assert c1 <= i0 or i1 <= c0, "instruction and context spans overlap"
                assert user[c0:c1].strip()
            elif meta["family"] != "safety":
                pytest.fail(f"{rec['id']}: a non-safety family without a context span")
            assert ("safety" in meta) == (meta["family"] == "safety")


def test_every_target_passes_its_own_checker(suite):
    for recs in suite.values():
        for rec in recs:
            result = score(rec, rec["messages"][1]["content"])
            assert result["pass"] == 1.0, rec
            if rec["meta"].get("safety"):
                assert result["refused"] == float(rec["meta"]["safety"] == "harmful")


def test_swapped_targets_fail(suite):
    """A target from another (non-safety) family is not accepted."""
    recs = [r for r in suite["test"] + suite["heldout"] if r["meta"]["family"] != "safety"]
    for a, b in zip(recs, recs[1:] + recs[:1]):
        if a["meta"]["family"] != b["meta"]["family"]:
            assert score(a, b["messages"][1]["content"])["pass"] == 0.0, (a["id"], b["id"])


def test_too_small_n_is_a_clear_error():
    with pytest.raises(TunelensError, match="too small"):
        generate_suite(2, 0)


def test_unknown_checker_is_a_clear_error():
    with pytest.raises(TunelensError, match="checker"):
        score({"id": "x", "meta": {"checker": "nope"}}, "hi")


def test_cli_writes_splits_and_summary(tmp_path):
    from tunelens.cli import app

    result = CliRunner().invoke(app, ["suite", "generate", "--n", "120", "--seed", "0", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for split, n in (("train", 84), ("test", 18), ("heldout", 18)):
        lines = (tmp_path / f"{split}.jsonl").read_text().splitlines()
        assert len(lines) == n
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["counts"] == {"train": 84, "test": 18, "heldout": 18}
    assert "safety" in result.output
