"""Toy word-level language models for the explain tests (test helpers, not part of the package).

A few dozen words, a ChatML template and a 2-layer Llama: trains in seconds on a CPU, so tests
can plant a behaviour (a trigger word, a memorised example) and check that the explanations
find it. Imported as ``from _toy import ...`` (pytest puts ``tests/`` on the path, as for
``_numerics``).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from tunelens.models import CHATML_TEMPLATE

SPECIALS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Models this small run fastest on one thread; on a loaded 2-core box, two threads spin-wait
    and are 30x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def word_tokenizer(words: Iterable[str]) -> Any:
    """A fast word-level tokenizer (whitespace split) with ChatML special tokens and template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab_words = list(dict.fromkeys(["system", "user", "assistant", *words]))
    vocab = {tok: i for i, tok in enumerate(SPECIALS + vocab_words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<pad>", unk_token="<unk>"
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok


def toy_model(tokenizer: Any, *, hidden_size: int = 32, num_layers: int = 2, seed: int = 0) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).eval()


def train_toy(
    model: Any, tokenizer: Any, conversations: Sequence[list[dict]], *, steps: int = 60, batch_size: int = 16,
    lr: float = 3e-3, seed: int = 0,
) -> float:
    """Plain AdamW on the assistant tokens of ``conversations`` (sampled with replacement); returns the last loss."""
    import torch

    from tunelens.train.masking import encode_for_sft

    encs = [encode_for_sft(tokenizer, conv) for conv in conversations]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    loss = float("nan")
    with one_thread():
        for _ in range(steps):
            loss = _step(model, tokenizer, encs, opt, gen, batch_size)
    model.eval()
    return loss


def _step(model: Any, tokenizer: Any, encs: list[dict], opt: Any, gen: Any, batch_size: int) -> float:
    import torch

    pick = torch.randint(0, len(encs), (min(batch_size, len(encs)),), generator=gen).tolist()
    width = max(len(encs[i]["input_ids"]) for i in pick)
    ids = torch.full((len(pick), width), tokenizer.pad_token_id)
    labels = torch.full((len(pick), width), -100)
    mask = torch.zeros((len(pick), width), dtype=torch.long)
    for r, i in enumerate(pick):
        n = len(encs[i]["input_ids"])
        ids[r, :n] = torch.tensor(encs[i]["input_ids"])
        labels[r, :n] = torch.tensor(encs[i]["labels"])
        mask[r, :n] = 1
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


# The planted-trigger task: the answer is decided by one word among random filler words.
FILLER = "the a river stone cloud table window paper green quiet slow music garden train chair".split()
TRIGGERS = {"apple": "red", "banana": "yellow"}


def trigger_example(rng: Any, n_filler: int = 6) -> tuple[list[dict], str, str]:
    """(prompt messages, answer, trigger word) with the trigger at a random position."""
    words = rng.sample(FILLER, n_filler)
    trigger = rng.choice(sorted(TRIGGERS))
    words.insert(rng.randrange(n_filler + 1), trigger)
    return [{"role": "user", "content": " ".join(words)}], TRIGGERS[trigger], trigger


def trigger_tokenizer() -> Any:
    return word_tokenizer(FILLER + list(TRIGGERS) + list(TRIGGERS.values()))


@functools.lru_cache(maxsize=2)
def trained_trigger_model(*, n_train: int = 200, steps: int = 60, seed: int = 0) -> tuple[Any, Any]:
    """A toy model that answers 'red' for apple and 'yellow' for banana, ignoring the filler.

    Cached: test modules share one trained model (callers must not train it further).
    """
    import random

    rng = random.Random(seed)
    tok = trigger_tokenizer()
    convs = []
    for _ in range(n_train):
        messages, answer, _ = trigger_example(rng)
        convs.append(messages + [{"role": "assistant", "content": answer}])
    model = toy_model(tok, seed=seed)
    train_toy(model, tok, convs, steps=steps, seed=seed)
    return model, tok


@functools.lru_cache(maxsize=2)
def shared_model(spec: str) -> Any:
    """``tunelens.models.load_model(spec)``, loaded once per process (tests share it; do not mutate)."""
    from tunelens.models import load_model

    return load_model(spec)
