"""Tolerances for float comparisons in tests, derived from the magnitudes compared.

The suite runs on CPUs of different kinds (AVX-512 with native bf16, AVX2-only AMD Zen 3) and
with 1 or 2 threads. Each changes how MKL / oneDNN / ATen block their reductions, so two fp32
computations of the same sum agree only up to rounding that grows with the magnitudes summed,
never bit for bit. A fixed ``atol`` is wrong at both ends: too tight for large values, too loose
for small ones. These helpers state the tolerance as a fraction of the size of what is compared.

``make test-numerics`` reruns the numerically sensitive tests (marker ``numeric``) with one thread
and with the ISA-emulating settings below, which reproduce the Zen 3 roundings on an AVX-512 host.
"""

from __future__ import annotations

import numpy as np
import torch

#: fp32 unit roundoff (2**-23).
FP32_EPS = float(torch.finfo(torch.float32).eps)


def assert_close_relative(actual, expected, *, rel: float, what: str = "value", scale: float | None = None) -> None:
    """Assert ``actual`` matches ``expected`` in norm and entry-wise, relative to ``expected``'s size.

    Two checks, both scaled by the reference: ``||a - e|| <= rel * ||e||`` (the whole tensor)
    and ``max|a - e| <= rel * max|e|`` (no single entry off by more than ``rel`` of the largest
    one). Entry-wise relative error is not used: an entry near zero that is a sum of large terms
    of opposite sign carries the rounding of those terms, not of its own size. Where the terms
    summed are larger than the result (a difference of two log-probabilities, say), pass their
    size as ``scale``: both bounds then become ``rel * scale``.
    """
    a = (actual.detach() if torch.is_tensor(actual) else torch.as_tensor(np.asarray(actual))).double()
    e = (expected.detach() if torch.is_tensor(expected) else torch.as_tensor(np.asarray(expected))).double()
    assert a.shape == e.shape, f"{what}: shape {tuple(a.shape)} != {tuple(e.shape)}"
    diff = (a - e)
    norm_e, max_e = float(e.norm()), float(e.abs().max()) if e.numel() else 0.0
    norm_err, max_err = float(diff.norm()), float(diff.abs().max()) if diff.numel() else 0.0
    if scale is not None:
        norm_e, max_e = float(scale) * max(1.0, e.numel() ** 0.5), float(scale)
    assert norm_err <= rel * norm_e, f"{what}: ||diff|| {norm_err:.3g} > {rel:g} * ||ref|| {norm_e:.3g}"
    assert max_err <= rel * max_e, f"{what}: max|diff| {max_err:.3g} > {rel:g} * max|ref| {max_e:.3g}"


def answer_margins(model, tokenizer, messages: list[dict]) -> list[float]:
    """Teacher-forced margin of every supervised token of a conversation (the answer and its EOS).

    The margin of a position is its label's logit minus the largest other logit: greedy decoding
    reproduces the answer exactly iff every margin is positive, and does so on every CPU kind iff
    every margin is far larger than the logits' rounding noise (about 1e-5 here).
    """
    from tunelens.train.masking import encode_for_sft

    enc = encode_for_sft(tokenizer, messages)
    ids = torch.tensor([enc["input_ids"]])
    labels = torch.tensor(enc["labels"])[1:]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1].float()
    pos = (labels != -100).nonzero().flatten()
    logits, target = logits[pos], labels[pos]
    chosen = logits.gather(1, target[:, None])[:, 0]
    others = logits.clone()
    others[torch.arange(len(target)), target] = float("-inf")
    return [float(m) for m in chosen - others.max(1).values]
