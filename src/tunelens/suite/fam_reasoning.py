"""Arithmetic word problems ("reasoning, then Answer: N") and classification with a justification."""

from __future__ import annotations

import random

from tunelens.suite.task import Task, pick_template
from tunelens.suite.words import words

THINGS = ["marbles", "stickers", "pencils", "books", "stamps", "coins", "shells", "cards", "apples", "eggs"]

PROBLEM_KINDS = ["addition", "subtraction", "multiplication", "division", "two_step"]
ARITH_INSTR = [
    "Solve the problem. Show your reasoning, then write the final line as \"Answer: N\".",
    "Work this out step by step and finish with \"Answer: N\" on the last line.",
    "Explain your reasoning briefly, then give the result in the form \"Answer: N\".",
    "Solve this word problem. End with a line of the form \"Answer: <number>\".",
]


def _problem(rng: random.Random) -> tuple[int, str, str, int]:
    w = words()
    name = rng.choice(w["first_names"])
    thing = rng.choice(THINGS)
    kind = rng.randrange(5)
    if kind == 0:
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        q = f"{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have now?"
        r, ans = f"{name} starts with {a} and gets {b} more, so {a} + {b} = {a + b}.", a + b
    elif kind == 1:
        a = rng.randint(10, 90)
        b = rng.randint(1, a - 1)
        q = f"{name} had {a} {thing} and gave {b} away. How many {thing} are left?"
        r, ans = f"{name} had {a} and gave away {b}, so {a} - {b} = {a - b}.", a - b
    elif kind == 2:
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        q = f"{name} buys {a} boxes with {b} {thing} in each box. How many {thing} is that in total?"
        r, ans = f"There are {a} boxes of {b}, so {a} x {b} = {a * b}.", a * b
    elif kind == 3:
        b, ans = rng.randint(2, 9), rng.randint(2, 12)
        a = b * ans
        q = f"{name} shares {a} {thing} equally among {b} friends. How many {thing} does each friend get?"
        r = f"{a} {thing} shared among {b} friends is {a} / {b} = {ans} each."
    else:
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        c = rng.randint(1, a * b - 1)
        q = (f"{name} has {a} bags with {b} {thing} in each and then loses {c} of them. "
             f"How many {thing} does {name} have?")
        r = f"{name} has {a} x {b} = {a * b} {thing}. After losing {c}, {a * b} - {c} = {a * b - c}."
        ans = a * b - c
    return kind, q, r, ans


def arithmetic(rng: random.Random) -> Task:
    i = rng.randrange(len(ARITH_INSTR))
    kind, q, reasoning, ans = _problem(rng)
    return Task(f"arithmetic/{i}", ARITH_INSTR[i], f"{reasoning}\nAnswer: {ans}", "answer_number",
                {"expected": ans}, context=q, context_first=rng.random() < 0.5,
                extra_meta={"problem_kind": PROBLEM_KINDS[kind]})


SENTIMENT_T = [
    "Classify the sentiment of this review as positive or negative, then justify your answer in one sentence.",
    "Is the following review positive or negative? Give the label first, then a one-sentence reason.",
    "Label this review positive or negative and explain why in a single sentence.",
    "Decide whether the review below is positive or negative. Start with the label, then justify it in one sentence.",
]


def classify_sentiment(rng: random.Random) -> Task:
    tid, instruction = pick_template(rng, "classify_sentiment", SENTIMENT_T)
    w = words()
    label = rng.choice(["positive", "negative"])
    product = rng.choice(w["products"])
    opener = rng.choice(w[f"{label}_openers"]).format(p=product)
    reason = rng.choice(w[f"{label}_reasons"])
    review = f"{opener} It {reason}."
    target = f"{label.capitalize()}. The reviewer says the {product} {reason}."
    return Task(tid, instruction, target, "label_justified",
                {"label": label, "labels": ["positive", "negative"]},
                context=review, context_first=rng.random() < 0.3)


TOPIC_T = [
    "Which topic is this text about: {labels}? Give the label, then justify it in one sentence.",
    "Classify the following text into one of these topics: {labels}. Start with the topic, then a one-sentence reason.",
    "Assign one topic ({labels}) to the text below and explain your choice in a single sentence.",
    "Is this text about {labels}? Reply with the topic followed by a one-sentence justification.",
]


def classify_topic(rng: random.Random) -> Task:
    tid, tpl = pick_template(rng, "classify_topic", TOPIC_T)
    w = words()
    labels = sorted(w["topics"])
    label = rng.choice(labels)
    text = " ".join(rng.sample(w["topics"][label], rng.randint(1, 2)))
    shown = list(labels)
    rng.shuffle(shown)
    target = f"{label.capitalize()}. The text is about {label} because {w['topic_reasons'][label]}."
    return Task(tid, tpl.format(labels=", ".join(shown[:-1]) + " or " + shown[-1]), target, "label_justified",
                {"label": label, "labels": labels}, context=text, context_first=rng.random() < 0.3)
