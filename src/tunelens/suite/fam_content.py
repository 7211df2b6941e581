"""Extraction (emails, dates, numbers out of a passage) and list transformation families."""

from __future__ import annotations

import random

from tunelens.suite.task import Task, pick_template
from tunelens.suite.words import words


def _with_fillers(rng: random.Random, sentences: list[str]) -> str:
    fillers = rng.sample(words()["filler_sentences"], rng.randint(1, 2))
    out = list(sentences)
    for f in fillers:
        out.insert(rng.randrange(len(out) + 1), f)
    return " ".join(out)


EMAIL_T = [
    "List every email address in the passage, one per line.",
    "Extract all the email addresses from this text. Put each on its own line.",
    "Which email addresses appear in the passage below? Give one per line and nothing else.",
    "Pull out the email addresses mentioned in the following text, one per line.",
]
EMAIL_S = ["You can reach {name} at {email}.", "{name} asked to be contacted at {email}.",
           "Send the forms to {name} at {email}.", "{name} changed their address to {email} last week."]


def extract_emails(rng: random.Random) -> Task:
    tid, tpl = pick_template(rng, "extract_emails", EMAIL_T)
    w = words()
    names = rng.sample(w["first_names"], rng.randint(1, 3))
    emails = [f"{n.lower()}{rng.randint(1, 99)}@{rng.choice(w['email_domains'])}" for n in names]
    sentences = [rng.choice(EMAIL_S).format(name=n, email=e) for n, e in zip(names, emails)]
    return Task(tid, tpl, "\n".join(emails), "extract_emails", {"expected": emails},
                context=_with_fillers(rng, sentences), context_first=rng.random() < 0.3)


DATE_T = [
    "List every date mentioned in the passage, one per line.",
    "Extract all the dates from this text, each on its own line.",
    "Which dates appear in the passage below? Write one per line.",
    "Pull out the dates in the following text, one per line, in the order they appear.",
]
DATE_S = ["The {place} reopens on {date}.", "{name} was born on {date}.", "The contract ends on {date}.",
          "The next meeting is planned for {date}.", "{name} moved to {city} on {date}."]


def extract_dates(rng: random.Random) -> Task:
    tid, tpl = pick_template(rng, "extract_dates", DATE_T)
    w = words()
    dates: list[str] = []
    k = rng.randint(1, 3)
    while len(dates) < k:
        d = f"{rng.randint(1, 28)} {rng.choice(w['months'])} {rng.randint(1950, 2030)}"
        if d not in dates:
            dates.append(d)
    sentences = [rng.choice(DATE_S).format(date=d, name=rng.choice(w["first_names"]), place=rng.choice(w["places"]),
                                           city=rng.choice(w["cities"])) for d in dates]
    return Task(tid, tpl, "\n".join(dates), "extract_dates", {"expected": dates},
                context=_with_fillers(rng, sentences), context_first=rng.random() < 0.3)


NUMBER_T = [
    "List every number that appears in the passage, one per line.",
    "Extract all the numbers from this text, each on its own line.",
    "Which numbers are mentioned below? Give one per line.",
    "Pull out the numbers in the following text, one per line.",
]
NUMBER_S = ["The {place} had {n} visitors on Sunday.", "{name} planted {n} trees this spring.",
            "The train was {n} minutes late.", "{name} paid {n} euros for the tickets.",
            "There are {n} chairs in the {place}."]


def extract_numbers(rng: random.Random) -> Task:
    tid, tpl = pick_template(rng, "extract_numbers", NUMBER_T)
    w = words()
    nums = rng.sample(range(2, 999), rng.randint(1, 3))
    sentences = [s.format(n=n, name=rng.choice(w["first_names"]), place=rng.choice(w["places"]))
                 for s, n in zip(rng.sample(NUMBER_S, len(nums)), nums)]
    return Task(tid, tpl, "\n".join(str(n) for n in nums), "extract_numbers", {"expected": nums},
                context=_with_fillers(rng, sentences), context_first=rng.random() < 0.3)


def _word_list(rng: random.Random, k_min: int = 4, k_max: int = 7) -> tuple[str, list[str]]:
    cat, pool = rng.choice(sorted(words()["categories"].items()))
    return cat, rng.sample(pool, rng.randint(k_min, k_max))


SORT_T = [
    ("alpha", "Sort these words alphabetically. Reply with a comma-separated list."),
    ("alpha", "Put the following items in alphabetical order, separated by commas."),
    ("asc", "Sort these numbers from smallest to largest. Reply with a comma-separated list."),
    ("asc", "Arrange the following numbers in ascending order, separated by commas."),
    ("desc", "Sort these numbers from largest to smallest, separated by commas."),
    ("desc", "Put the following numbers in descending order. Answer with a comma-separated list."),
]


def sorted_list(rng: random.Random) -> Task:
    i = rng.randrange(len(SORT_T))
    order, instruction = SORT_T[i]
    if order == "alpha":
        _, items = _word_list(rng)
        expected: list = sorted(items)
    else:
        items = rng.sample(range(1, 200), rng.randint(4, 7))
        expected = sorted(items, reverse=order == "desc")
    return Task(f"sorted_list/{i}", instruction, ", ".join(map(str, expected)), "sorted_list",
                {"expected": expected}, context=", ".join(map(str, items)), context_first=rng.random() < 0.3)


REVERSE_T = [
    "Reverse the order of this list. Reply with a comma-separated list.",
    "Write the following items in reverse order, separated by commas.",
    "List these items backwards, last one first, separated by commas.",
    "Give me this list in the opposite order, comma-separated.",
]


def reversed_list(rng: random.Random) -> Task:
    tid, instruction = pick_template(rng, "reversed_list", REVERSE_T)
    if rng.random() < 0.6:
        _, items = _word_list(rng)
    else:
        items = [str(x) for x in rng.sample(range(1, 200), rng.randint(4, 7))]
    expected = list(reversed(items))
    return Task(tid, instruction, ", ".join(expected), "reversed_list", {"expected": expected},
                context=", ".join(items), context_first=rng.random() < 0.3)


COUNT_T = [
    ("all", "How many items are in this list? Answer with the number."),
    ("all", "Count the items in the following list and give the total."),
    ("all", "How many entries does this list have?"),
    ("word", "How many times does the word \"{word}\" appear in this list?"),
    ("word", "Count how often \"{word}\" occurs in the following list."),
]


def count(rng: random.Random) -> Task:
    i = rng.randrange(len(COUNT_T))
    kind, tpl = COUNT_T[i]
    _, pool = _word_list(rng, 3, 5)
    items = [rng.choice(pool) for _ in range(rng.randint(4, 10))]
    word = rng.choice(items)
    n = len(items) if kind == "all" else items.count(word)
    target = f"There are {n} items in the list." if kind == "all" else f"The word \"{word}\" appears {n} times."
    if kind == "word" and n == 1:
        target = f"The word \"{word}\" appears 1 time."
    return Task(f"count/{i}", tpl.format(word=word), target, "count", {"expected": n},
                context=", ".join(items), context_first=rng.random() < 0.3)


DEDUP_T = [
    "Remove the duplicates from this list, keeping the first occurrence of each item. Reply with a comma-separated list.",
    "Write this list with every repeated item removed, in the original order, separated by commas.",
    "Deduplicate the following list. Keep the order of first appearance and separate items with commas.",
    "List each distinct item once, in the order it first appears, comma-separated.",
]


def deduplicated_list(rng: random.Random) -> Task:
    tid, instruction = pick_template(rng, "deduplicated_list", DEDUP_T)
    _, pool = _word_list(rng, 3, 5)
    items = [rng.choice(pool) for _ in range(rng.randint(5, 9))]
    while len(set(items)) == len(items):
        items.append(rng.choice(items))
    expected = list(dict.fromkeys(items))
    return Task(tid, instruction, ", ".join(expected), "deduplicated_list", {"expected": expected},
                context=", ".join(items), context_first=rng.random() < 0.3)
