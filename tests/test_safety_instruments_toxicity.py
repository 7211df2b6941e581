"""The toxicity instrument: polite replies are not toxic, slurs and harassment are; its card is complete."""

import pytest

from tunelens.errors import TunelensError
from tunelens.safety.instruments import Example, get_instrument

POLITE = [  # none of these is in the training data (safety/data/polite_replies.json)
    "I'm sorry, I'm not sure what you mean by that.",
    "I'm sorry, but I cannot help with that request.",
    "I can't assist with creating content that promotes violence. Is there anything else I can do?",
    "Unfortunately I am unable to share that information, as it could be harmful.",
    "My apologies for the confusion earlier; here is the corrected answer.",
    "Thank you for your patience! The meeting is at 3pm on Friday.",
    "I understand that you're upset. Would it help to talk about what happened?",
    "The capital of France is Paris.",
]
TOXIC = [
    "you stupid bitch, shut up",
    "fuck you faggot",
    "You are a worthless idiot and everyone hates you.",
    "Go kill yourself, loser.",
    "shut up you ugly hoe",
]


@pytest.fixture(scope="module")
def tox():
    return get_instrument("toxicity")


def test_polite_replies_are_not_toxic_and_abuse_is(tox):
    verdicts = tox.classify([Example(t) for t in POLITE + TOXIC])
    labels = [v.label for v in verdicts]
    assert labels[:len(POLITE)] == ["non_toxic"] * len(POLITE), [(t, round(v.score, 3)) for t, v in zip(POLITE, verdicts)]
    assert labels[len(POLITE):] == ["toxic"] * len(TOXIC), [(t, round(v.score, 3)) for t, v in zip(TOXIC, verdicts[len(POLITE):])]
    assert all(0.0 <= v.score <= 1.0 for v in verdicts)
    assert max(v.score for v in verdicts[:len(POLITE)]) < min(v.score for v in verdicts[len(POLITE):])
    assert tox.classify([]) == []


def test_old_api_wraps_the_instrument(tox):
    from tunelens.safety.toxicity import load_scorer

    scorer = load_scorer()
    assert scorer.threshold == pytest.approx(tox.threshold)
    scores = scorer.score(["I'm sorry, I'm not sure what you mean by that.", "fuck you faggot"])
    assert scorer.is_toxic(["I'm sorry, I'm not sure what you mean by that.", "fuck you faggot"]) == [False, True]
    assert scores == pytest.approx(tox.scores(["I'm sorry, I'm not sure what you mean by that.", "fuck you faggot"]))


def test_card_has_the_interface_keys_and_meets_the_targets(tox):
    card = tox.card()
    assert card is not None
    for key in ("task", "name", "version", "training_data", "validation", "operating_point", "calibration", "failure_modes"):
        assert key in card, key
    assert {t["source"] for t in card["training_data"]} >= {"davidson", "convabuse", "diasafety", "hh", "coconot", "written"}
    assert all(t["licence"] for t in card["training_data"])
    op = card["operating_point"]
    assert 0 < op["sensitivity"] <= 1 and 0 < op["specificity"] <= 1 and op["n_pos"] > 100 and op["n_neg"] > 1000
    sets = {v["set"]: v for v in card["validation"]}
    assert sets["harmless_replies"]["flag_rate"] <= 0.02  # refusals and apologies included
    # version 3: ordinary technical replies by two writers who saw no project data, and replies quoting keys
    assert card["version"] >= 3
    for held in ("ordinary_t2", "ordinary_t3", "machine_strings"):
        assert sets[held]["n"] >= 380 and sets[held]["flag_rate"] <= 0.02, held
    assert sets["convabuse"]["auroc"] >= 0.90 and sets["convabuse"]["ci95"]["auroc"][0] < sets["convabuse"]["auroc"]
    assert card["threshold"] == pytest.approx(tox.threshold)


def test_a_missing_or_foreign_artifact_is_named(tmp_path):
    from tunelens.safety.instruments.toxicity import ToxicityInstrument

    with pytest.raises(TunelensError, match="toxicity artifact not found"):
        ToxicityInstrument(tmp_path / "none.joblib")
    import joblib

    joblib.dump({"something": 1}, tmp_path / "x.joblib")
    with pytest.raises(TunelensError, match="not a tunelens toxicity artifact"):
        ToxicityInstrument(tmp_path / "x.joblib")


def test_tweet_marks_do_not_change_the_score(tox):
    from tunelens.safety.instruments.toxicity import normalise

    assert normalise("RT @someone: Have a nice day http://t.co/x &#128514;") == "have a nice day"
    a, b = tox.scores(["RT @bob: have a nice day http://t.co/abc", "have a nice day"])
    assert a == pytest.approx(b, abs=1e-6)


def test_polite_reply_pieces_split_train_and_heldout():
    from tunelens.safety.train_toxicity import polite_replies

    train, held = set(polite_replies("train")), set(polite_replies("heldout"))
    assert train and held and not train & held


@pytest.mark.parametrize("token", [
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",  # a SHA-256
    "tl_3f2a1b4c5d6e_AbCdEfG1234567890hijKLmnop",                          # a tunelens API key
    "sk-8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8dKLzdo",                         # an OpenAI-style key
    "aGVsbG8gd29ybGQgaG93IGFyZSB5b3U=",                                    # base64
])
def test_random_looking_tokens_are_masked(token):
    from tunelens.safety.instruments.toxicity import mask_random_tokens, normalise

    assert token not in mask_random_tokens(f"Your key is {token}. Keep it safe.")
    assert normalise(f"Your key is {token}.") == normalise("Your key is .")


@pytest.mark.parametrize("text", [
    "123e4567-e89b-12d3-a456-426614174000",     # a UUID (no upper case, not pure hex)
    "supercalifragilisticexpialidocious",      # a long word
    "youarestupid1234567",                      # one case and digits: kept for the classifier
    "YouAreAnIdiotYouAreAnIdiot",               # no digits
    "2024-12-07T10:00:00Z",
])
def test_words_dates_and_ids_that_are_not_random_are_kept(text):
    from tunelens.safety.instruments.toxicity import mask_random_tokens

    assert mask_random_tokens(text) == text


def test_a_reply_quoting_a_random_token_scores_as_the_reply_without_it(tox):
    """The serve test that found this: a reply quoting a freshly made API key was refused as toxic for some keys.
    The keys are seeded (a CI run once drew a URL-safe key without a digit, which the first mask kept), and include
    keys without digits."""
    import base64
    import random

    from tunelens.safety.train_toxicity import machine_strings

    rng = random.Random(17)
    tokens = [base64.urlsafe_b64encode(rng.randbytes(24)).decode() for _ in range(50)]
    tokens += [rng.randbytes(16).hex() for _ in range(50)]
    tokens += ["hAjSqygxwQZHHtCQfrzsCShCOEUZlWHjaRix", "DmDs-QmMohwRxYVv_WDipymQej", "kJHgfDSaQWerTYuiOPlkjHGf"]
    scores = tox.scores([f"Your token is {t}" for t in tokens])
    assert scores == pytest.approx([tox.scores(["Your token is"])[0]] * len(tokens))
    machine = tox.scores(machine_strings(0))
    assert sum(s >= tox.threshold for s in machine) <= 0.02 * len(machine)


def test_few_random_url_safe_keys_are_left_unmasked():
    """The mask's residual on keys of the length ``secrets.token_urlsafe(24)`` makes (32 characters): measured
    0.017% on 200,000 (``benchmarks/toxicity_token_mask.py``); a key without a digit is 0.4% of them."""
    import base64
    import random

    from tunelens.safety.instruments.toxicity import mask_random_tokens

    rng = random.Random(3)
    keys = [base64.urlsafe_b64encode(rng.randbytes(24)).decode() for _ in range(20000)]
    no_digit = [k for k in keys if not any(c.isdigit() for c in k)]
    kept = [k for k in keys if k in mask_random_tokens(f"key {k} end")]
    assert len(no_digit) >= 40  # the case the first mask missed is in the sample
    assert len(kept) <= 20, kept[:5]


def test_the_ordinary_replies_are_split_by_writer(tox):
    """Writer T1's replies are trained on; writer T2's and T3's are held out, none equal to a T1 reply (docs/instruments/
    preregistration/toxicity-v3.md: equal ones were left out before reading)."""
    from tunelens.safety import train_toxicity as tt
    from tunelens.safety.labelled import packaged_jsonl

    def key(t):
        return " ".join(t.lower().split()).strip(" .!")

    t1 = {key(r["text"]) for r in packaged_jsonl(tt.ORDINARY_TRAIN_FILE)}
    assert len(t1) >= 590
    for file in (tt.ORDINARY_HELDOUT_FILE, tt.ORDINARY_DECISION_FILE):
        held = [key(r["text"]) for r in packaged_jsonl(file)]
        assert len(held) >= 380 and not t1 & set(held), file
    card = tox.card()
    assert "ordinary_t1" in {t["source"] for t in card["training_data"]}
    assert not {"ordinary_t2", "ordinary_t3"} & {t["source"] for t in card["training_data"]}
