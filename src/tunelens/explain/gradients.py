"""Gradient attributions, batched so that all response tokens share one pass.

For a prompt of P tokens and a response of R tokens, the score of output token j is
log p(y_j | prompt, y_<j). One forward pass computes all R scores; the R per-target gradients
w.r.t. the prompt embeddings come from a single vmapped backward (``is_grads_batched``), so
nothing runs once per target token. Integrated gradients stack the interpolation steps along
the batch dimension of that same pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tunelens.errors import TunelensError
from tunelens.explain.scoring import device_of, forward_logits, frozen


def _targets(model: Any, embeds, input_len: int, output_ids: list[int]):
    """Forward ``embeds`` (B, P+R, d); return log p(y_j) for every row, shape (B, R)."""
    import torch

    n_out = len(output_ids)
    logits = forward_logits(model, inputs_embeds=embeds, keep=n_out + 1)[:, :n_out]
    logp = logits.float().log_softmax(-1)
    idx = torch.tensor(output_ids, device=logp.device)
    return logp.gather(-1, idx.view(1, -1, 1).expand(logp.shape[0], -1, 1)).squeeze(-1)


TARGETS = ("token", "response")


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise TunelensError(f"gradient target must be 'token' (one row per response token) or 'response' "
                            f"(the whole response's log-probability, one row), got {target!r}")


def _per_target_grads(scores, embeds, target_chunk: int, target: str = "token"):
    """Yield (slice of targets, grads (r, B, L, d)): d scores[:, j] / d embeds, separately per j.

    ``target="response"``: one gradient, of the summed log-probability of the whole response
    (the quantity the faithfulness check perturbs), as slice(0, 1). One backward pass instead
    of one batched backward over every response token: about R times less work, which is what
    lets the run explain 50+ items per model on a CPU.
    """
    import torch

    if target == "response":
        (grads,) = torch.autograd.grad(scores.sum(-1).sum(), embeds)
        yield slice(0, 1), grads.unsqueeze(0)
        return
    n_out = scores.shape[1]
    for lo in range(0, n_out, target_chunk):
        hi = min(n_out, lo + target_chunk)
        eye = torch.zeros((hi - lo, *scores.shape), dtype=scores.dtype, device=scores.device)
        for k in range(hi - lo):
            eye[k, :, lo + k] = 1.0
        try:
            (grads,) = torch.autograd.grad(
                scores, embeds, grad_outputs=eye, is_grads_batched=True, retain_graph=hi < n_out
            )
        except RuntimeError as exc:
            # Some ops have no vmap rule: fall back to one backward per target (slower, same values).
            if "vmap" not in str(exc).lower() and "batched" not in str(exc).lower():
                raise
            grads = torch.stack(
                [torch.autograd.grad(scores, embeds, grad_outputs=e, retain_graph=True)[0] for e in eye]
            )
        yield slice(lo, hi), grads


def _embed(model: Any, ids: list[int]):
    import torch

    emb_layer = model.get_input_embeddings()
    if emb_layer is None:
        raise TunelensError("this model exposes no input embeddings: gradient methods cannot attribute to tokens")
    return emb_layer(torch.tensor([ids], device=device_of(model))).detach()


def gradient_matrix(
    model: Any, input_ids: list[int], output_ids: list[int], combine: Callable[[Any, Any], Any], *,
    target_chunk: int = 32, target: str = "token",
) -> np.ndarray:
    """(R, P) matrix from the gradients of each response token's log-prob w.r.t. the prompt embeddings.

    ``combine(grads, emb)`` turns the gradients of a chunk of r response tokens, shape (r, P, d),
    and the prompt embeddings, shape (P, d), into the chunk's (r, P) rows. One forward pass and
    one vmapped backward per ``target_chunk`` response tokens; weights are frozen.
    ``target="response"``: a (1, P) matrix, from the gradient of the whole response's log-prob.
    """
    _check_target(target)
    p = len(input_ids)
    with frozen(model):
        emb = _embed(model, input_ids + output_ids)
        embeds = emb.clone().requires_grad_(True)
        scores = _targets(model, embeds, p, output_ids)
        matrix = np.zeros((1 if target == "response" else len(output_ids), p))
        for sl, grads in _per_target_grads(scores, embeds, target_chunk, target):
            matrix[sl] = combine(grads[:, 0, :p], emb[0, :p]).detach().double().cpu().numpy()
    return matrix


def input_x_gradient(
    model: Any, input_ids: list[int], output_ids: list[int], *, reduce: str = "norm", target_chunk: int = 32,
    target: str = "token",
) -> np.ndarray:
    """(R, P) matrix from embedding * d log p(y_j) / d embedding, reduced over the hidden dimension.

    ``reduce="norm"`` (default, as in Inseq) takes the L2 norm: a magnitude, robust to the
    sign cancellations that make the plain dot product noisy; ``"sum"`` keeps the signed dot
    product (first-order Taylor contribution).
    """
    if reduce not in ("norm", "sum"):
        raise TunelensError(f"input_x_gradient reduce must be 'norm' or 'sum', got {reduce!r}")

    def combine(grads, emb):
        prod = grads * emb
        return prod.norm(dim=-1) if reduce == "norm" else prod.sum(-1)

    return gradient_matrix(model, input_ids, output_ids, combine, target_chunk=target_chunk, target=target)


def _baseline(model: Any, emb, kind: str | int, tokenizer: Any = None):
    import torch

    if isinstance(kind, int) and not isinstance(kind, bool):  # captum-style: every prompt token -> this id
        return _embed(model, [kind])[:, :1].expand_as(emb).clone()
    if kind == "zero":
        return torch.zeros_like(emb)
    if kind == "mean":
        table = model.get_input_embeddings().weight.detach()
        return table.mean(0).view(1, 1, -1).expand_as(emb).clone()
    if kind == "pad":
        pad_id = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
        if pad_id is None:
            raise TunelensError("integrated gradients baseline 'pad' needs a tokenizer with a pad token")
        return _embed(model, [pad_id])[:, :1].expand_as(emb).clone()
    raise TunelensError(f"unknown integrated-gradients baseline {kind!r}: use 'zero' or 'pad'")


def integrated_gradients(
    model: Any,
    input_ids: list[int],
    output_ids: list[int],
    *,
    steps: int = 16,
    baseline: str = "mean",
    approximation: str = "gausslegendre",
    step_batch: int = 16,
    target_chunk: int = 32,
    target: str = "token",
    tokenizer: Any = None,
    progress: Any = None,
) -> np.ndarray:
    """(R, P) matrix of integrated gradients on the prompt embeddings.

    The prompt embeddings move along a straight line from ``baseline`` to the real ones; the
    response tokens keep their real embeddings. Baselines: ``mean`` (default: every prompt token
    replaced by the mean embedding of the vocabulary, an "average token"), ``pad`` (the pad
    token's embedding) or ``zero``. Avoid ``zero`` with RMSNorm/LayerNorm models: the first
    norm divides by the embedding's scale, so log p jumps erratically for interpolation steps
    near 0 and no practical step count integrates it. Step positions and weights come from
    captum (Gauss-Legendre by default); each row sums to about
    log p(y_j | prompt) - log p(y_j | baseline) (completeness).
    """
    import torch
    from captum.attr._utils.approximation_methods import approximation_parameters

    if steps < 1:
        raise TunelensError(f"integrated gradients needs steps >= 1, got {steps}")
    _check_target(target)
    step_sizes_fn, alphas_fn = approximation_parameters(approximation)
    alphas, weights = alphas_fn(steps), step_sizes_fn(steps)
    p = len(input_ids)
    matrix = torch.zeros((1 if target == "response" else len(output_ids), p), dtype=torch.float64)
    with frozen(model):
        emb = _embed(model, input_ids + output_ids)
        prompt_emb = emb[:, :p]
        base = _baseline(model, prompt_emb, baseline, tokenizer)
        delta = prompt_emb - base
        for lo in range(0, steps, step_batch):
            a = torch.tensor(alphas[lo : lo + step_batch], dtype=emb.dtype, device=emb.device)
            w = torch.tensor(weights[lo : lo + step_batch], dtype=torch.float64)
            path = (base + a.view(-1, 1, 1) * delta).clone().requires_grad_(True)
            full = torch.cat([path, emb[:, p:].expand(len(a), -1, -1)], dim=1)
            scores = _targets(model, full, p, output_ids)
            for sl, grads in _per_target_grads(scores, path, target_chunk, target):
                # sum over steps of weight * (grad . delta): the Riemann/Gauss sum of the path integral
                dots = (grads * delta).sum(-1).double().cpu()  # (r, steps, P)
                matrix[sl] += (dots * w.view(1, -1, 1)).sum(1)
            if progress is not None:
                progress(len(a))
    return matrix.numpy()


def completeness_gap(
    model: Any, input_ids: list[int], output_ids: list[int], matrix: np.ndarray, *,
    baseline: str | int = "mean", tokenizer: Any = None,
) -> dict[str, Any]:
    """How far an integrated-gradients matrix is from the completeness axiom.

    Each row should sum to log p(y_j | prompt) - log p(y_j | baseline prompt); the gap measures
    the quadrature error of the step count (captum calls it the convergence delta). ``baseline``
    as in ``integrated_gradients``, or a token id (every prompt token replaced by it, as captum's
    ``TextTokenInput`` baseline does). Returns per-target gaps and ``relative_gap`` =
    sum |gap| / sum |f(x) - f(baseline)|.
    """
    import torch

    p = len(input_ids)
    with frozen(model), torch.no_grad():
        emb = _embed(model, input_ids + output_ids)
        base = emb.clone()
        base[:, :p] = _baseline(model, emb[:, :p], baseline, tokenizer)
        f_x = _targets(model, emb, p, output_ids)[0].double().cpu().numpy()
        f_b = _targets(model, base, p, output_ids)[0].double().cpu().numpy()
    expected = f_x - f_b
    gaps = np.asarray(matrix, dtype=float).sum(1) - expected
    return {"gaps": gaps.tolist(), "expected": expected.tolist(),
            "relative_gap": float(np.abs(gaps).sum() / max(np.abs(expected).sum(), 1e-12))}
