from types import SimpleNamespace

import pytest
import torch

from tunelens.errors import TunelensError
from tunelens.generate import GenerationParams, PromptTooLongError, generate, render_prompt, stream_generate
from tunelens.models import load_model


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    torch.manual_seed(0)
    return load_model(str(tiny_model_path))


PROMPTS = [
    [{"role": "user", "content": "Hello there"}],
    [{"role": "user", "content": "A much longer prompt with many more words in it than the first one"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Count to three"}],
]


def test_results_in_input_order_and_bounded(tiny):
    params = GenerationParams(max_new_tokens=12, batch_size=2)
    res = generate(tiny.model, tiny.tokenizer, PROMPTS, params)
    assert len(res) == 3
    lengths = [len(tiny.tokenizer(render_prompt(tiny.tokenizer, p), add_special_tokens=False)["input_ids"]) for p in PROMPTS]
    assert [r.prompt_tokens for r in res] == lengths
    for r in res:
        assert 1 <= r.completion_tokens <= 12
        assert r.finish_reason in {"eos", "length"}
        if r.finish_reason == "length":
            assert r.completion_tokens == 12


def test_batched_equals_one_by_one_greedy(tiny):
    params = GenerationParams(max_new_tokens=10, batch_size=8)
    batched = generate(tiny.model, tiny.tokenizer, PROMPTS, params)
    single = [generate(tiny.model, tiny.tokenizer, [p], params)[0] for p in PROMPTS]
    assert [r.text for r in batched] == [r.text for r in single]


def test_sampling_deterministic_for_seed(tiny):
    p1 = GenerationParams(max_new_tokens=10, temperature=1.0, seed=7)
    a = generate(tiny.model, tiny.tokenizer, PROMPTS, p1)
    b = generate(tiny.model, tiny.tokenizer, PROMPTS, p1)
    assert [r.text for r in a] == [r.text for r in b]
    c = generate(tiny.model, tiny.tokenizer, PROMPTS, GenerationParams(max_new_tokens=10, temperature=1.0, seed=8))
    assert [r.text for r in a] != [r.text for r in c]


def test_stop_string_cuts_output(tiny):
    full = generate(tiny.model, tiny.tokenizer, PROMPTS[:1], GenerationParams(max_new_tokens=16))[0].text
    assert len(full) > 4
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    cut = generate(tiny.model, tiny.tokenizer, PROMPTS[:1], GenerationParams(max_new_tokens=16, stop=[stop]))[0]
    assert cut.finish_reason == "stop"
    assert stop not in cut.text and full.startswith(cut.text)


def test_stream_matches_batch(tiny):
    params = GenerationParams(max_new_tokens=10)
    streamed = "".join(stream_generate(tiny.model, tiny.tokenizer, PROMPTS[1], params))
    assert streamed == generate(tiny.model, tiny.tokenizer, PROMPTS[1:2], params)[0].text


def test_too_long_prompt_error_or_skip(tiny):
    limit = tiny.model.config.max_position_embeddings
    huge = [{"role": "user", "content": "word " * limit}]
    with pytest.raises(PromptTooLongError, match="exceeds the model context"):
        generate(tiny.model, tiny.tokenizer, [huge], GenerationParams(max_new_tokens=4))
    res = generate(tiny.model, tiny.tokenizer, [huge, PROMPTS[0]], GenerationParams(max_new_tokens=4, on_too_long="skip"))
    assert res[0].finish_reason == "too_long" and res[0].text == "" and "exceeds" in res[0].error
    assert res[1].finish_reason in {"eos", "length"}


def test_no_double_bos(tiny):
    tok = tiny.tokenizer
    ids = tok(render_prompt(tok, PROMPTS[0]), add_special_tokens=False)["input_ids"]
    assert not (len(ids) > 1 and ids[0] == ids[1] == tok.bos_token_id)


def test_bad_params_rejected():
    with pytest.raises(TunelensError, match="max_new_tokens"):
        GenerationParams(max_new_tokens=0)
    with pytest.raises(TunelensError, match="top_p"):
        GenerationParams(top_p=0)


def _same(a, b):
    """Two GenerationResults equal but for their timing."""
    return (a.text, a.prompt_tokens, a.completion_tokens, a.finish_reason, a.error) == (
        b.text, b.prompt_tokens, b.completion_tokens, b.finish_reason, b.error)


def _streamed(tiny, prompt, params):
    stream = stream_generate(tiny.model, tiny.tokenizer, prompt, params)
    assert stream.result is None
    deltas = list(stream)
    return "".join(deltas), stream.result


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_stream_ends_with_the_batch_result_at_max_tokens(tiny, temperature):
    params = GenerationParams(max_new_tokens=7, temperature=temperature, seed=5)
    for prompt in PROMPTS:
        text, result = _streamed(tiny, prompt, params)
        (batch,) = generate(tiny.model, tiny.tokenizer, [prompt], params)
        assert _same(result, batch), (result, batch)
        assert text == result.text and result.finish_reason == "length" and result.completion_tokens == 7


def test_stream_ends_with_the_batch_result_at_eos(trigger_model):
    """The toy trigger model answers one word and then its EOS (<|im_end|>)."""
    import random

    from _toy import trigger_example

    model, tok = trigger_model
    rng = random.Random(3)
    params = GenerationParams(max_new_tokens=8)
    for _ in range(3):
        messages, answer, _ = trigger_example(rng)
        text, result = _streamed(SimpleNamespace(model=model, tokenizer=tok), messages, params)
        (batch,) = generate(model, tok, [messages], params)
        assert _same(result, batch), (result, batch)
        assert text == result.text == answer and result.finish_reason == "eos"
        assert result.completion_tokens == len(tok(answer, add_special_tokens=False)["input_ids"]) + 1  # + EOS


def test_stream_never_sends_part_of_a_stop_string(tiny):
    """A stop string across two tokens: the first token's half of it is held back, then dropped."""
    sampled = GenerationParams(max_new_tokens=16, temperature=1.0, seed=3)  # greedy tiny-random says only "\n"
    deltas = list(stream_generate(tiny.model, tiny.tokenizer, PROMPTS[0], sampled))
    full = "".join(deltas)
    bounds = [len("".join(deltas[:k])) for k in range(1, len(deltas))]
    pos = next(b for b in bounds if 0 < b < len(full) and full.find(full[b - 1:b + 1]) == b - 1)
    stop = full[pos - 1:pos + 1]
    params = GenerationParams(max_new_tokens=16, temperature=1.0, seed=3, stop=[stop])
    text, result = _streamed(tiny, PROMPTS[0], params)
    (batch,) = generate(tiny.model, tiny.tokenizer, PROMPTS[:1], params)
    assert _same(result, batch), (result, batch)
    assert result.finish_reason == "stop" and text == result.text == full[:pos - 1]


def test_closing_a_stream_early_stops_it(tiny):
    stream = stream_generate(tiny.model, tiny.tokenizer, PROMPTS[0], GenerationParams(max_new_tokens=64))
    first = next(stream)
    stream.close()
    assert first and stream.result is None
    with pytest.raises(StopIteration):
        next(stream)
