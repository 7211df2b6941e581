"""Format-constraint families: JSON keys, bullets, letter case, word limit, start/end phrase, no commas."""

from __future__ import annotations

import json
import random

from tunelens.suite.task import Task, join_words, pick_template, quoted
from tunelens.suite.words import words


def person(rng: random.Random) -> dict:
    w = words()
    return {
        "name": rng.choice(w["first_names"]),
        "age": rng.randint(19, 78),
        "city": rng.choice(w["cities"]),
        "job": rng.choice(w["jobs"]),
    }


def person_passage(rng: random.Random, p: dict) -> str:
    w = words()
    facts = [
        f"{p['name']} is {p['age']} years old.",
        f"{p['name']} works as a {p['job']}.",
        f"These days {p['name']} lives in {p['city']}.",
    ]
    rng.shuffle(facts)
    facts.insert(rng.randrange(len(facts) + 1), rng.choice(w["filler_sentences"]))
    return " ".join(facts)


def scene_sentence(rng: random.Random) -> str:
    w = words()
    return (f"The {rng.choice(w['adjectives'])} {rng.choice(w['first_names'])} {rng.choice(w['verbs_past'])} "
            f"the {rng.choice(w['places'])} before {rng.choice(w['times'])}.")


JSON_T = [
    "Return a JSON object with the keys {keys} describing the person in this text. Output only the JSON.",
    "Extract the person's details as JSON with exactly these keys: {keys}.",
    "Read the passage and fill in a JSON object whose keys are {keys}. Reply with JSON only.",
    "From the text, produce a JSON object containing the keys {keys} and nothing else.",
    "Give me the facts about this person as JSON, using only the keys {keys}.",
]


def json_keys(rng: random.Random) -> Task:
    tid, tpl = pick_template(rng, "json_keys", JSON_T)
    p = person(rng)
    keys = rng.sample(["name", "age", "city", "job"], rng.randint(2, 4))
    target = json.dumps({k: p[k] for k in keys})
    return Task(tid, tpl.format(keys=quoted(keys)), target, "json_keys", {"keys": keys},
                context=person_passage(rng, p), context_first=rng.random() < 0.3)


BULLET_T = [
    "List exactly {n} of these {cat} as bullet points.",
    "Pick {n} {cat} from the list below and write them as a bulleted list, one per line.",
    "Write a bulleted list with exactly {n} items, choosing {cat} from this list.",
    "Choose {n} of the following {cat}. Format your answer as {n} bullet points.",
    "Give me {n} {cat} from the list, each on its own bullet point.",
]


def bullets(rng: random.Random) -> Task:
    tid, tpl = pick_template(rng, "bullets", BULLET_T)
    cat, pool = rng.choice(sorted(words()["categories"].items()))
    options = rng.sample(pool, rng.randint(5, 8))
    n = rng.randint(2, min(5, len(options) - 1))
    chosen = rng.sample(options, n)
    return Task(tid, tpl.format(n=n, cat=cat), "\n".join(f"- {x}" for x in chosen), "bullet_count", {"n": n},
                context=", ".join(options), context_first=rng.random() < 0.3)


CASE_T = [
    ("upper", "Rewrite the following sentence in all capital letters."),
    ("upper", "Convert this sentence to uppercase."),
    ("upper", "Repeat the sentence below using only capital letters."),
    ("lower", "Write the sentence below entirely in lowercase letters."),
    ("lower", "Rewrite this sentence with no capital letters at all."),
    ("lower", "Convert the following text to lowercase."),
]


def letter_case(rng: random.Random) -> Task:
    i = rng.randrange(len(CASE_T))
    case, instruction = CASE_T[i]
    sentence = scene_sentence(rng)
    target = sentence.upper() if case == "upper" else sentence.lower()
    return Task(f"letter_case/{i}", instruction, target, "letter_case", {"case": case, "source": sentence},
                context=sentence, context_first=rng.random() < 0.3)


MAXW_T = [
    "Summarise the passage below in at most {n} words.",
    "In no more than {n} words, say who this text is about and what they do.",
    "Describe the person in the following text using {n} words or fewer.",
    "Give a summary of at most {n} words.",
    "Sum up this passage in {n} words or less.",
]


def max_words(rng: random.Random) -> Task:
    tid, tpl = pick_template(rng, "max_words", MAXW_T)
    p = person(rng)
    n = rng.randint(8, 15)
    target = f"{p['name']} is a {p['job']} living in {p['city']}."
    return Task(tid, tpl.format(n=n), target, "max_words", {"limit": n, "mention": p["name"]},
                context=person_passage(rng, p), context_first=rng.random() < 0.3)


QUESTIONS = [
    ("Where does {name} live?", "{name} lives in {city}."),
    ("What does {name} do for a living?", "{name} works as a {job}."),
    ("How old is {name}?", "{name} is {age} years old."),
]
START_PHRASES = ["In short,", "Here is the answer:", "Simply put,", "According to the text,", "To answer your question,"]
END_PHRASES = ["Is there anything else?", "That is all.", "Hope this helps.", "Thanks for asking.", "End of answer."]
START_T = [
    "{q} Start your reply with \"{phrase}\"",
    "Answer this question about the passage, beginning with the words \"{phrase}\": {q}",
    "{q} Your answer must begin with \"{phrase}\"",
    "Using the text, answer: {q} Begin with \"{phrase}\"",
]
END_T = [
    "{q} End your reply with \"{phrase}\"",
    "Answer this question about the passage and finish with the exact words \"{phrase}\": {q}",
    "{q} Your answer must end with \"{phrase}\"",
    "Using the text, answer: {q} Close with \"{phrase}\"",
]


def _phrase_task(rng: random.Random, family: str, templates: list[str], phrases: list[str], at_start: bool) -> Task:
    tid, tpl = pick_template(rng, family, templates)
    p = person(rng)
    q, a = rng.choice(QUESTIONS)
    phrase = rng.choice(phrases)
    answer = a.format(**p)
    target = f"{phrase} {answer}" if at_start else f"{answer} {phrase}"
    checker = "starts_with" if at_start else "ends_with"
    return Task(tid, tpl.format(q=q.format(**p), phrase=phrase), target, checker, {"phrase": phrase},
                context=person_passage(rng, p), context_first=rng.random() < 0.5)


def start_phrase(rng: random.Random) -> Task:
    return _phrase_task(rng, "start_phrase", START_T, START_PHRASES, True)


def end_phrase(rng: random.Random) -> Task:
    return _phrase_task(rng, "end_phrase", END_T, END_PHRASES, False)


NOCOMMA_T = [
    "Write one sentence that mentions all of these {cat} without using any commas.",
    "Use every word in this list in a single sentence. Do not use commas.",
    "Make a sentence containing each of these {cat}. The sentence must not contain a comma.",
    "Without any commas, write a sentence that names all of the following {cat}.",
]


def no_commas(rng: random.Random) -> Task:
    tid, tpl = pick_template(rng, "no_commas", NOCOMMA_T)
    cat, pool = rng.choice(sorted(words()["categories"].items()))
    items = rng.sample(pool, rng.randint(3, 4))
    target = f"The list of {cat} includes the " + " and the ".join(items) + "."
    return Task(tid, tpl.format(cat=cat), target, "no_commas", {"required": items},
                context=", ".join(items), context_first=rng.random() < 0.3)
