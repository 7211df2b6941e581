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
