"""GSM8K: prompts (zero-shot and k-shot) and exact match on the final number."""

from __future__ import annotations

import random
import re

INSTRUCTION = "Solve the problem step by step. End with a line of the form 'The answer is <number>.'"
_NUMBER = r"-?\$?\d[\d,]*(?:\.\d+)?"


def _clean_number(text: str) -> str | None:
    text = text.replace(",", "").replace("$", "").strip().rstrip(".")
    try:
        value = float(text)
    except ValueError:
        return None
    return str(int(value)) if value == int(value) else str(value)


def reference_answer(answer: str) -> str:
    """The number after ``####`` in a GSM8K answer."""
    if "####" not in answer:
        raise ValueError(f"GSM8K answer has no '####' line: {answer[-80:]!r}")
    value = _clean_number(answer.split("####")[-1])
    if value is None:
        raise ValueError(f"GSM8K final answer is not a number: {answer.split('####')[-1]!r}")
    return value


def extract_answer(response: str) -> str | None:
    """The model's final number: after 'answer is' / '####' when present, else the last number."""
    for pattern in (rf"answer is[:\s]*\**\s*({_NUMBER})", rf"####\s*({_NUMBER})"):
        hits = re.findall(pattern, response, flags=re.IGNORECASE)
        if hits:
            return _clean_number(hits[-1])
    numbers = re.findall(_NUMBER, response)
    return _clean_number(numbers[-1]) if numbers else None


def exact_match(response: str, reference: str) -> float:
    predicted = extract_answer(response)
    return float(predicted is not None and predicted == reference)


def worked_solution(answer: str) -> str:
    """A train answer as an exemplar reply: calculator annotations removed, the standard last line."""
    body, final = answer.split("####")
    body = re.sub(r"<<[^>]*>>", "", body).strip()
    return f"{body}\nThe answer is {final.strip()}."


def build_messages(question: str, exemplars: list[dict]) -> list[dict]:
    """Zero-shot when ``exemplars`` is empty; otherwise k worked examples as earlier chat turns."""
    messages: list[dict] = []
    for ex in exemplars:
        messages.append({"role": "user", "content": f"{ex['question']}\n\n{INSTRUCTION}"})
        messages.append({"role": "assistant", "content": worked_solution(ex["answer"])})
    messages.append({"role": "user", "content": f"{question}\n\n{INSTRUCTION}"})
    return messages


def pick_exemplars(train_rows: list[dict], k: int, seed: int) -> list[dict]:
    """k fixed exemplars (the same for every question, as in the standard k-shot setup)."""
    if k > len(train_rows):
        raise ValueError(f"asked for {k} few-shot exemplars but the train file has {len(train_rows)} rows")
    return random.Random(seed).sample(train_rows, k)
