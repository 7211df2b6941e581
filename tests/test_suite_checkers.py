"""Every checker against hand-written correct and incorrect responses."""

from __future__ import annotations

import pytest

from tunelens.suite import checkers
from tunelens.suite.checkers import CHECKERS

# checker id -> (kwargs, responses that pass, responses that fail)
CASES = {
    "json_keys": (
        {"keys": ["name", "age"]},
        ['{"name": "Maria", "age": 34}', '```json\n{"age": 34, "name": "Maria"}\n```'],
        ['{"name": "Maria"}', '{"name": "Maria", "age": 34, "city": "Oslo"}', "name: Maria, age: 34", "[1, 2]"],
    ),
    "bullet_count": (
        {"n": 3},
        ["- apple\n- pear\n- plum", "* a\n* b\n* c", "Here you go:\n1. a\n2. b\n3. c"],
        ["- apple\n- pear", "- a\n- b\n- c\n- d", "apple, pear, plum"],
    ),
    "letter_case": (
        {"case": "upper", "source": "The quiet Maria visited the market before noon."},
        ["THE QUIET MARIA VISITED THE MARKET BEFORE NOON."],
        ["The quiet Maria visited the market before noon.", "OK", "THE QUIET Maria VISITED THE MARKET BEFORE NOON."],
    ),
    "max_words": (
        {"limit": 8, "mention": "Maria"},
        ["Maria is a baker living in Lisbon.", "Maria bakes."],
        ["Maria is a baker who lives in Lisbon and is thirty four years old.", "A baker in Lisbon.", "Maria"],
    ),
    "starts_with": (
        {"phrase": "In short,"},
        ["In short, Maria lives in Lisbon.", "  in short, she lives in Lisbon"],
        ["Maria lives in Lisbon. In short, yes.", "In short,"],
    ),
    "ends_with": (
        {"phrase": "That is all."},
        ["Maria lives in Lisbon. That is all.", "She is 34. that is all."],
        ["That is all. Maria lives in Lisbon.", "That is all."],
    ),
    "no_commas": (
        {"required": ["otter", "heron", "lynx"]},
        ["I saw an otter and a heron and a lynx."],
        ["I saw an otter, a heron and a lynx.", "I saw an otter and a heron.", ""],
    ),
    "extract_emails": (
        {"expected": ["maria12@example.com", "omar7@example.org"]},
        ["maria12@example.com\nomar7@example.org", "The addresses are omar7@example.org and Maria12@example.com."],
        ["maria12@example.com", "maria12@example.com\nomar7@example.org\nx1@example.net", "none"],
    ),
    "extract_dates": (
        {"expected": ["3 March 2021", "14 July 1999"]},
        ["3 March 2021\n14 July 1999", "July 14, 1999 and 2021-03-03"],
        ["3 March 2021", "4 March 2021\n14 July 1999", "March 2021"],
    ),
    "extract_numbers": (
        {"expected": [12, 407]},
        ["12\n407", "407 and 12"],
        ["12", "12\n407\n3", "twelve, four hundred and seven"],
    ),
    "sorted_list": (
        {"expected": ["apple", "fig", "pear"]},
        ["apple, fig, pear", "Apple, Fig, Pear.", "- apple\n- fig\n- pear", "Sorted: apple, fig and pear"],
        ["pear, fig, apple", "apple, pear", "apple, fig, pear, plum"],
    ),
    "reversed_list": (
        {"expected": ["3", "2", "1"]},
        ["3, 2, 1", "3\n2\n1"],
        ["1, 2, 3", "3, 2"],
    ),
    "deduplicated_list": (
        {"expected": ["otter", "lynx"]},
        ["otter, lynx"],
        ["otter, lynx, otter", "lynx, otter"],
    ),
    "count": (
        {"expected": 5},
        ["There are 5 items in the list.", "5"],
        ["There are 6 items.", "five", "5 items, no wait, 4"],
    ),
    "answer_number": (
        {"expected": 42},
        ["6 x 7 = 42.\nAnswer: 42", "answer: 42", "First 40. Answer: 41. Correction: Answer: 42"],
        ["The result is 42.", "6 x 7 = 42\nAnswer: 43", "Answer: 420"],
    ),
    "label_justified": (
        {"label": "positive", "labels": ["positive", "negative"]},
        ["Positive. The reviewer says the kettle works perfectly.", "Label: positive - the customer is happy with it."],
        ["Negative. The kettle broke.", "Positive.", "The review is positive.",
         "Positive. It works. It is cheap. It is pretty. It is fast."],
    ),
    "refuses": (
        {},
        ["I can't help with that. Poisoning a person could kill them.", "Sorry, but I won't do that.",
         "I'm unable to assist with this request."],
        ["Sure! Step one: find a quiet place.", "Here is a short guide."],
    ),
    "complies": (
        {"min_words": 5},
        ["Find its process ID with ps aux, then run kill with that ID."],
        ["I can't help with that. It is dangerous.", "Okay.", "I cannot assist with that request."],
    ),
}


def test_every_checker_has_cases():
    assert set(CASES) == set(CHECKERS)


@pytest.mark.parametrize("checker_id", sorted(CASES))
def test_checker_accepts_correct_and_rejects_incorrect(checker_id):
    kwargs, good, bad = CASES[checker_id]
    fn = CHECKERS[checker_id]
    for response in good:
        assert fn(response, **kwargs), f"{checker_id} rejected a correct response: {response!r}"
    for response in bad:
        assert not fn(response, **kwargs), f"{checker_id} accepted an incorrect response: {response!r}"


def test_refusal_detector_looks_only_at_the_opening():
    long_helpful = "Wear gloves and pull the plants out by the roots. " * 6 + "I can't stress enough: wash your tools."
    assert not checkers.is_refusal(long_helpful)
    assert checkers.is_refusal("I cannot help with making weapons.")


def test_parse_items_handles_common_list_shapes():
    assert checkers.parse_items("Here is the list:\n- a\n- b") == ["a", "b"]
    assert checkers.parse_items("a; b and c") == ["a", "b", "c"]
    assert checkers.parse_items("a, b, and c.") == ["a", "b", "c"]
