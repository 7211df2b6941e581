"""Shared set-up of the GRPO tests: a toy word-level model saved as a checkpoint, prompt records,
and reward functions importable by path (``grpo_rewards:...``) from a temporary directory.

The toy vocabulary is a dozen words, so a random model says the planted word "apple" in about
one completion token in twenty: a reward for it has signal from the first step.
"""

from __future__ import annotations

from pathlib import Path

WORDS = "apple red blue green say word one two three four five".split()

REWARDS_MODULE = '''
def apple(prompt, completion, **item):
    words = completion.split()
    return sum(w == "apple" for w in words) / max(len(words), 1)

def boom(prompt, completion, **item):
    if item["id"] == "p3":
        raise ValueError("no luck with " + item["id"])
    return 0.0

def text(prompt, completion, **item):
    return "high"

def nothing(prompt, completion, **item):
    return None

def echo_id(prompt, completion, **item):
    return float(item["id"][1:])
'''


def build(tmp: Path) -> dict[str, Path]:
    """The toy checkpoint, a prompts file and the rewards module under ``tmp``."""
    from _toy import toy_model, word_tokenizer

    from tunelens.records import make_conversation, write_jsonl

    tok = word_tokenizer(WORDS)
    model = toy_model(tok, hidden_size=32, seed=0)
    model_dir = tmp / "toy"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    rows = []
    for i, w in enumerate(WORDS * 2):
        rec = make_conversation([{"role": "user", "content": f"say one word {w}"}], source="t", source_file="inline",
                                row=i, license="MIT")
        rec["id"] = f"p{i}"
        rows.append(rec)
    prompts = tmp / "prompts.jsonl"
    write_jsonl(prompts, rows)
    rewards_dir = tmp / "rewards"
    rewards_dir.mkdir()
    (rewards_dir / "grpo_rewards.py").write_text(REWARDS_MODULE, encoding="utf-8")
    return {"model": model_dir, "prompts": prompts, "rewards_dir": rewards_dir}
