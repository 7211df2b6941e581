"""What the refusal and harm instruments are trained on: nothing from Stanford Alpaca (CC BY-NC 4.0,
which cannot be in an artifact shipped under Apache-2.0), no test-split item through the sources that
replaced it, and docs pages that are the cards' rendering."""

import json

import pytest

from tunelens.safety import train_docs, train_harm, train_refusal
from tunelens.safety.instruments._base import CARD_DIR
from tunelens.safety.labelled import load_labelled

ALPACA = "alpaca_data.json"


def _data_dir_with(tmp_path, shared_data, alpaca_rows=None):
    """A data folder holding every shared file, with alpaca_data.json left out (``alpaca_rows`` None) or replaced."""
    for f in shared_data.iterdir():
        if f.name != ALPACA:
            (tmp_path / f.name).symlink_to(f)
    if alpaca_rows is not None:
        (tmp_path / ALPACA).write_text(json.dumps(alpaca_rows), encoding="utf-8")
    return tmp_path


def _key(rows):
    return [(r["text"], r["label"], r["family"], r["source"]) for r in rows]


@pytest.fixture(scope="module")
def labelled(shared_data):
    return train_refusal.labelled_rows(str(shared_data))


def test_refusal_training_rows_do_not_need_alpaca(tmp_path, shared_data, labelled):
    rows = train_refusal.training_rows(str(shared_data), labelled=labelled)
    without = train_refusal.training_rows(str(_data_dir_with(tmp_path, shared_data)), labelled=labelled)
    assert _key(without) == _key(rows)  # the same rows, built with no Alpaca file in the data folder
    assert not [r for r in rows if "alpaca" in (r["family"] + r["source"]).lower()]
    by_family = {}
    for r in rows:
        by_family[r["family"]] = by_family.get(r["family"], 0) + 1
    # Alpaca's 1,200 compliant replies are now GSM8K answers and Self-Instruct seed outputs
    assert by_family["gsm8k"] + by_family["self_instruct"] == train_refusal.N_COMPLIANT
    assert by_family["synthetic"] == 2400


def test_harm_training_prompts_do_not_depend_on_alpaca(tmp_path, shared_data):
    train, held, dropped = train_harm.prompt_sets(str(shared_data))
    real = json.loads((shared_data / ALPACA).read_text(encoding="utf-8"))
    # the same number of rows, every instruction marked: the shuffle picks the same positions
    marked = [{"instruction": f"ALPACA-MARK {i}", "input": "", "output": ""} for i in range(len(real))]
    train_m, held_m, dropped_m = train_harm.prompt_sets(str(_data_dir_with(tmp_path, shared_data, marked)))
    assert train_m == train and dropped_m == dropped  # the training prompts do not change with Alpaca's text
    assert not [t for t, _, _ in train_m if "ALPACA-MARK" in t]
    assert not [s for _, _, s in train if "alpaca" in s]
    # Alpaca is the held-out benign check only: 300 instructions, the same rows as before
    assert [s for _, _, s in held_m if s == "alpaca_heldout"] == ["alpaca_heldout"] * 300
    assert all(t.startswith("ALPACA-MARK") for t, _, s in held_m if s == "alpaca_heldout")
    assert [t for t, _, s in held if s == "alpaca_heldout"] == [real[int(t.split()[1])]["instruction"]
                                                                 for t, _, s in held_m if s == "alpaca_heldout"]
    assert sum(s == "gsm8k" for _, _, s in train) == train_harm.N_GSM8K


def test_replacement_sources_leave_out_test_split_texts(shared_data, labelled, monkeypatch):
    """GSM8K and Self-Instruct have no labelled replies; the guard still drops one whose text is a test-split text."""
    gsm = train_refusal.gsm8k_answers(str(shared_data))
    seed = train_refusal.self_instruct_outputs(str(shared_data))
    fake = [{**labelled[0], "id": f"FAKE{i}", "text": t, "split": "test", "src_id": f"fake:{i}"}
            for i, t in enumerate(gsm[:40] + seed[:3])]
    rows = train_refusal.training_rows(str(shared_data), labelled=labelled + fake)
    texts = {r["text"] for r in rows if r["family"] in ("gsm8k", "self_instruct", "synthetic")}
    assert not {f["text"] for f in fake} & texts
    assert sum(r["family"] in ("gsm8k", "self_instruct") for r in rows) == train_refusal.N_COMPLIANT
    assert "The answer is" in gsm[0] and "<<" not in "".join(gsm) and "####" not in "".join(gsm)

    real = load_labelled(str(shared_data))
    train, _, _ = train_harm.prompt_sets(str(shared_data))
    asked = [t for t, _, s in train if s == "gsm8k"][:25]
    fake_req = [{**real[0], "id": f"FAKE{i}", "prompt": q, "split": "test"} for i, q in enumerate(asked)]
    monkeypatch.setattr(train_harm, "load_labelled", lambda data_dir=None, split=None: real + fake_req)
    train2, _, _ = train_harm.prompt_sets(str(shared_data))
    left = {t for t, _, s in train2 if s == "gsm8k"}
    assert not set(asked) & left and len(left) == train_harm.N_GSM8K - len(asked)


@pytest.mark.parametrize("name", ["refusal", "harm"])
def test_cards_name_no_alpaca_training_and_docs_are_their_rendering(name):
    card = json.loads((CARD_DIR / f"{name}.json").read_text(encoding="utf-8"))
    assert not [t for t in card["training_data"] if "alpaca" in t["source"].lower() or "NC" in t["licence"]]
    assert "labeller_agreement" in card and card["labeller_agreement"]["n"] >= 300
    assert (train_docs.DOCS_DIR / f"{name}.md").read_text(encoding="utf-8") == train_docs.render(card)
