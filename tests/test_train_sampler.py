"""The length-grouped sampler: every example once, low padding kept, batch order no longer long-to-short."""

import torch

from tunelens.train.trainer import LengthGroupedBatchSampler


def _batches(order, lengths, bs):
    return [order[i : i + bs] for i in range(0, len(order), bs)]


def test_permutation_with_longest_batch_first_and_low_padding():
    gen = torch.Generator().manual_seed(0)
    lengths = [int(x) for x in torch.randint(10, 500, (1003,), generator=gen)]
    bs = 8
    order = list(LengthGroupedBatchSampler(lengths, bs, generator=torch.Generator().manual_seed(1)))
    assert sorted(order) == list(range(len(lengths)))  # nothing lost, nothing repeated
    batches = _batches(order, lengths, bs)
    assert max(lengths[i] for i in batches[0]) == max(lengths)
    assert len(batches[-1]) == len(lengths) % bs  # the short batch stays last: boundaries never move
    assert all(len(b) == bs for b in batches[:-1])
    padded = sum(bs * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches[:-1])
    random_order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(2)).tolist()
    padded_random = sum(bs * max(lengths[i] for i in b) - sum(lengths[i] for i in b)
                        for b in _batches(random_order, lengths, bs)[:-1])
    assert padded < 0.2 * padded_random


def test_batch_order_is_not_long_to_short_within_megabatches():
    lengths = list(range(1, 801))  # one mega-batch of 50 batches of 4 would be strictly descending
    bs = 4
    order = list(LengthGroupedBatchSampler(lengths, bs, generator=torch.Generator().manual_seed(0)))
    maxima = [max(lengths[i] for i in b) for b in _batches(order, lengths, bs)]
    descents = sum(a > b for a, b in zip(maxima[1:50], maxima[2:51]))
    assert 10 < descents < 40  # shuffled, not sorted (a sorted walk would give 49)


def test_deterministic_for_a_generator_seed():
    lengths = [(i * 37) % 211 + 5 for i in range(300)]
    a = list(LengthGroupedBatchSampler(lengths, 8, generator=torch.Generator().manual_seed(5)))
    b = list(LengthGroupedBatchSampler(lengths, 8, generator=torch.Generator().manual_seed(5)))
    c = list(LengthGroupedBatchSampler(lengths, 8, generator=torch.Generator().manual_seed(6)))
    assert a == b and a != c
