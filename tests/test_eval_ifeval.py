"""IFEval checkers: every instruction id with a passing and a failing response; loose variants; splitter."""

import json

import pytest

from tunelens.errors import TunelensError
from tunelens.evaluate import ifeval
from tunelens.evaluate.text import count_sentences, count_words, split_sentences

CASES = [
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"},
     "The NASA and ESA teams met.", "The nasa team met."),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "less than"},
     "Only ONE word is loud.", "THREE LOUD WORDS here."),
    ("change_case:english_capital", {}, "THIS IS ALL IN CAPITAL LETTERS AND IN ENGLISH.", "This is not all capitals."),
    ("change_case:english_lowercase", {}, "this is all lowercase and written in english.", "This has a Capital."),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a story about a cat."},
     "Write a story about a cat. Once upon a time...", "Once upon a time there was a cat."),
    ("combination:two_responses", {}, "First answer here.\n******\nSecond, different answer.",
     "Same.\n******\nSame."),
    ("detectable_content:number_placeholders", {"num_placeholders": 2},
     "Send it to [address] on [date].", "Send it to [address] tomorrow."),
    ("detectable_content:postscript", {"postscript_marker": "P.S."},
     "Hello there.\n\nP.S. See you soon.", "Hello there. See you soon."),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"},
     "Hi.\nP.P.S remember the milk", "Hi.\nP.S. remember the milk"),
    ("detectable_format:constrained_response", {}, "My answer is yes.", "Yes, definitely."),
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', "{'a': 1,}"),
    ("detectable_format:multiple_sections", {"num_sections": 2, "section_spliter": "Section"},
     "Section 1\nIntro.\nSection 2\nBody.", "Section 1\nOnly one section."),
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, "* one\n* two\n- three", "* one\n* two"),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2},
     "This is *important* and **also this**.", "Only *one* highlight."),
    ("detectable_format:title", {}, "<<My Title>>\nText.", "My Title\nText."),
    ("keywords:existence", {"keywords": ["apple", "pie"]}, "I baked an Apple pie.", "I baked an apple tart."),
    ("keywords:forbidden_words", {"forbidden_words": ["bad", "ugly"]}, "A badge is fine.", "That is ugly."),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "at least"}, "cat and cat", "one cat"),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "less than"}, "one cat", "cat cat cat"),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": "at least"},
     "Zigzag puzzle", "Hello world"),
    ("language:response_language", {"language": "fr"},
     "Bonjour, je suis très content de vous voir aujourd'hui dans cette belle ville.",
     "Hello, I am very happy to see you today in this beautiful city."),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
     "First paragraph.\n\nThen, the second.", "First paragraph.\n\nAfter that, the second."),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "One.\n***\nTwo.\n***\nThree.", "One.\n***\nTwo."),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"},
     "One sentence. Two sentences.", "One. Two. Three. Four."),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": "at least"},
     "Dr. Smith arrived. He sat down.", "Dr. Smith arrived at 3.30 p.m. with Mr. Jones."),
    ("length_constraints:number_words", {"num_words": 5, "relation": "at least"}, "one two three four five", "one two"),
    ("length_constraints:number_words", {"num_words": 5, "relation": "less than"}, "one two", "one two three four five six"),
    ("punctuation:no_comma", {}, "No commas here.", "Commas, here."),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Done. Any other questions?", "Any other questions? Done."),
    ("startend:quotation", {}, '"Wrapped in quotes."', "Not wrapped."),
]


@pytest.mark.parametrize("instruction_id,kwargs,passing,failing", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_checker_pass_and_fail(instruction_id, kwargs, passing, failing):
    assert ifeval.check(instruction_id, passing, kwargs) is True
    assert ifeval.check(instruction_id, failing, kwargs) is False


def test_every_instruction_id_has_a_case():
    assert {c[0] for c in CASES} == set(ifeval.CHECKERS)


def test_every_id_in_the_real_data_is_known(shared_data):
    rows = [json.loads(line) for line in (shared_data / "ifeval_input_data.jsonl").open()]
    assert len(rows) == 541
    used = {i for r in rows for i in r["instruction_id_list"]}
    assert used == set(ifeval.CHECKERS)
    # every row's kwargs are accepted by its checker (a bad kwarg raises TunelensError)
    for r in rows:
        for instruction_id, kwargs in zip(r["instruction_id_list"], r["kwargs"]):
            ifeval.check(instruction_id, "a response", kwargs)


def test_empty_response_never_passes():
    assert ifeval.check("punctuation:no_comma", "   ", {}) is False


def test_loose_passes_where_strict_fails():
    response = "Sure, here it is:\n\"All quoted text here.\""
    assert not ifeval.check("startend:quotation", response, {})
    assert ifeval.check_loose("startend:quotation", response, {})
    bolded = "**no capitals here**"
    assert not ifeval.check("detectable_format:title", bolded, {})
    assert ifeval.check_loose("punctuation:no_comma", "Intro, with a comma\nthe body has none", {})


def test_score_item_levels():
    row = {"key": 1, "prompt": "p", "instruction_id_list": ["punctuation:no_comma", "startend:quotation"],
           "kwargs": [{}, {}]}
    scores = ifeval.score_item(row, "no commas here")
    assert scores["prompt_level_strict_acc"] == 0.0
    assert scores["inst_level_strict_acc"] == [1.0, 0.0]


def test_unknown_id_and_bad_kwargs_are_clear_errors():
    with pytest.raises(TunelensError, match="unknown IFEval instruction id"):
        ifeval.check("nope:nothing", "x", {})
    with pytest.raises(TunelensError, match="bad kwargs"):
        ifeval.check("punctuation:no_comma", "x", {"surprise": 1})


def test_sentence_splitter():
    text = "Dr. Smith paid $3.50 for it. Was it worth it? Yes!\n\nA heading without a stop\n\nThe U.S. army left."
    assert split_sentences(text) == ["Dr. Smith paid $3.50 for it.", "Was it worth it?", "Yes!",
                                     "A heading without a stop", "The U.S. army left."]
    assert count_sentences("He said \"stop.\" Then he left.") == 2
    assert count_sentences("") == 0
    assert count_words("It's a well-known fact.") == 6
