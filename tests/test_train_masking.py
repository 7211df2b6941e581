"""The SFT label mask: exactly the assistant tokens (end-of-turn included), for two templates."""

from __future__ import annotations

import pytest

from tunelens.errors import TunelensError
from tunelens.train.masking import IGNORE_INDEX, encode_for_sft

# Zephyr-style: BOS from the template, role tags, the tokenizer's EOS as end of turn.
ZEPHYR_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

CONVERSATION = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris is the capital."},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome, of course."},
]


@pytest.fixture(scope="module")
def chatml_tokenizer(tiny_model_path):
    from tunelens.models import load_tokenizer

    return load_tokenizer(str(tiny_model_path))


@pytest.fixture(scope="module")
def zephyr_tokenizer(tiny_model_path):
    from tunelens.models import load_tokenizer

    tok = load_tokenizer(str(tiny_model_path))
    tok.chat_template = ZEPHYR_TEMPLATE
    return tok


def labelled_runs(enc) -> list[tuple[int, int]]:
    """Maximal [start, end) runs of positions whose label is not IGNORE_INDEX."""
    runs, start = [], None
    for i, lab in enumerate(enc["labels"] + [IGNORE_INDEX]):
        if lab != IGNORE_INDEX and start is None:
            start = i
        elif lab == IGNORE_INDEX and start is not None:
            runs.append((start, i))
            start = None
    return runs


def expected_reply_ids(tok, content: str) -> list[int]:
    # The reply as the model must produce it: its text followed by the end-of-turn token.
    return tok(content, add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<|im_end|>")]


@pytest.mark.parametrize("which", ["chatml", "zephyr"])
def test_mask_covers_exactly_the_assistant_turns(which, chatml_tokenizer, zephyr_tokenizer):
    tok = chatml_tokenizer if which == "chatml" else zephyr_tokenizer
    enc = encode_for_sft(tok, CONVERSATION)
    ids, labels = enc["input_ids"], enc["labels"]
    runs = labelled_runs(enc)
    replies = [m["content"] for m in CONVERSATION if m["role"] == "assistant"]
    assert len(runs) == len(replies)
    for (start, end), reply in zip(runs, replies):
        # Labels equal the ids on the run, and the run is exactly reply + end-of-turn token.
        assert labels[start:end] == ids[start:end]
        assert ids[start:end] == expected_reply_ids(tok, reply)
        # The token right before the reply is the end of the assistant header.
        assert tok.decode(ids[:start]).endswith("assistant\n" if which == "chatml" else "<|assistant|>\n")
    supervised = sum(end - start for start, end in runs)
    assert enc["num_supervised"] == supervised
    assert sum(1 for lab in labels if lab == IGNORE_INDEX) == len(ids) - supervised
    # The end-of-turn token is the pad token in SmolLM2; it must still be a label.
    assert tok.pad_token_id == tok.eos_token_id
    assert labels.count(tok.eos_token_id) == len(replies)


def test_chatml_keeps_default_system_prompt(chatml_tokenizer):
    enc = encode_for_sft(chatml_tokenizer, CONVERSATION)
    text = chatml_tokenizer.decode(enc["input_ids"])
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


def test_no_double_bos(zephyr_tokenizer):
    enc = encode_for_sft(zephyr_tokenizer, CONVERSATION)
    bos = zephyr_tokenizer.bos_token_id
    assert enc["input_ids"][0] == bos
    assert enc["input_ids"][:2].count(bos) == 1


def test_system_turn_and_prompt_are_not_labelled(chatml_tokenizer):
    conv = [{"role": "system", "content": "Be terse."}] + CONVERSATION[:2]
    enc = encode_for_sft(chatml_tokenizer, conv)
    runs = labelled_runs(enc)
    assert len(runs) == 1
    assert enc["prompt_length"] == runs[0][0]
    assert "Be terse." not in chatml_tokenizer.decode([t for t in enc["labels"] if t != IGNORE_INDEX])


def test_truncation_is_reported(chatml_tokenizer):
    full = encode_for_sft(chatml_tokenizer, CONVERSATION)
    cut = encode_for_sft(chatml_tokenizer, CONVERSATION, max_length=full["length"] - 5)
    assert cut["truncated"] and not full["truncated"]
    assert cut["length"] == full["length"]
    assert len(cut["input_ids"]) == len(cut["labels"]) == full["length"] - 5
    assert cut["labels"] == full["labels"][: full["length"] - 5]
    # The final newline after the last end-of-turn token is not a label, so 4 labels go.
    assert full["labels"][-1] == IGNORE_INDEX
    assert cut["num_supervised"] == full["num_supervised"] - 4


def test_conversation_without_assistant_is_an_error(chatml_tokenizer):
    with pytest.raises(TunelensError, match="no assistant turn"):
        encode_for_sft(chatml_tokenizer, [{"role": "user", "content": "hello"}])


def test_template_that_is_not_prefix_stable_fails_loudly(tiny_model_path):
    from tunelens.models import load_tokenizer

    tok = load_tokenizer(str(tiny_model_path))
    # Renders only the last message: the prompt of turn 3 is not a prefix of the full text.
    tok.chat_template = "{{ messages[-1]['content'] }}{% if add_generation_prompt %}>>{% endif %}"
    with pytest.raises(TunelensError, match="concatenation of its turns"):
        encode_for_sft(tok, CONVERSATION)


def test_training_prompt_must_equal_inference_prompt(chatml_tokenizer, monkeypatch, tmp_path):
    import tunelens.generate
    from tunelens.records import make_conversation, write_jsonl
    from tunelens.train.data import prepare_sft

    data = tmp_path / "d.jsonl"
    write_jsonl(data, [make_conversation(CONVERSATION, source="t", source_file=None, row=0, license="MIT")])
    assert prepare_sft(chatml_tokenizer, [str(data)], 256, "truncate").rows  # consistent: fine
    # An inference renderer that differs from training (here: a trailing space) must stop training.
    real = tunelens.generate.render_prompt
    monkeypatch.setattr(tunelens.generate, "render_prompt", lambda tok, msgs: real(tok, msgs) + " ")
    with pytest.raises(TunelensError, match="differently in training and in inference"):
        prepare_sft(chatml_tokenizer, [str(data)], 256, "truncate")
