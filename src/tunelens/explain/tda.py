"""Training-data attribution: which training examples shaped this response?

``gradient`` (the main method, TracIn-style with the final checkpoint): the influence of a
training example on a response is the similarity of their loss gradients over the trainable
(LoRA) parameters. Each gradient is compressed to ``proj_dim`` numbers with a seeded
CountSketch (every parameter goes to one random bucket with a random sign), a random
projection that preserves dot products in expectation and needs no dense matrix, so
thousands of examples fit in memory; the projected training gradients are cached in the run
directory. Scores are cosine similarities by default (``normalize=False`` gives raw dot
products, which favour high-loss examples).

``representation`` (the cheap fallback): cosine similarity of the mean last-layer hidden state
over the assistant tokens.

Losses are the SFT loss over assistant tokens only (``tunelens.train.masking.encode_for_sft``).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from tunelens.errors import TunelensError

METHODS = ("gradient", "representation")


def _conversation(record: dict) -> list[dict] | None:
    if record.get("kind") == "preference":
        return list(record.get("prompt", [])) + [{"role": "assistant", "content": record.get("chosen", "")}]
    return record.get("messages")


def load_run(run_dir: str | Path) -> tuple[Any, Any, list[dict], dict]:
    """(model, tokenizer, training records, run info) from a ``tunelens train`` output directory."""
    from tunelens.models import load_model
    from tunelens.records import iter_jsonl

    run = Path(run_dir)
    manifest_path = run / "manifest.json"
    if not manifest_path.is_file():
        raise TunelensError(f"{run} is not a training run directory: no manifest.json")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TunelensError(f"{manifest_path}: invalid JSON ({exc})") from exc
    for sub in ("adapter", "model", "merged"):
        if (run / sub).is_dir():
            loaded = load_model(str(run / sub))
            break
    else:
        raise TunelensError(f"{run} holds no adapter/, model/ or merged/ directory to load")
    records = []
    for entry in manifest.get("data", []):
        path = Path(entry.get("path", ""))
        if not path.is_file():
            raise TunelensError(f"{manifest_path}: training data file {path} no longer exists")
        try:
            records.extend(iter_jsonl(path))
        except ValueError as exc:
            raise TunelensError(str(exc)) from None
    if not records:
        raise TunelensError(f"{manifest_path} names no training data")
    max_length = None
    config_path = run / "config.yaml"
    if config_path.is_file():
        import yaml

        max_length = (yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}).get("max_length")
    info = {"run_dir": str(run), "model_id": loaded.model_id, "data": manifest.get("data", []), "max_length": max_length}
    return loaded.model, loaded.tokenizer, records, info


def _encode(tokenizer: Any, messages: list[dict], max_length: int | None) -> dict | None:
    from tunelens.train.masking import encode_for_sft

    enc = encode_for_sft(tokenizer, messages, max_length)
    return enc if enc["num_supervised"] > 0 else None


def select_parameters(model: Any) -> tuple[list[str], list[Any]]:
    """LoRA parameters when the model has them; otherwise the last transformer block's."""
    named = list(model.named_parameters())
    lora = [(n, p) for n, p in named if "lora_" in n and p.is_floating_point()]
    if lora:
        return [n for n, _ in lora], [p for _, p in lora]
    layer_ids = [int(m.group(1)) for n, _ in named if (m := re.search(r"\.(?:layers|h|blocks)\.(\d+)\.", n))]
    if layer_ids:
        last = f".{max(layer_ids)}."
        chosen = [(n, p) for n, p in named if re.search(r"\.(?:layers|h|blocks)" + re.escape(last), n)]
    else:
        chosen = named
    return [n for n, _ in chosen], [p for _, p in chosen]


class CountSketch:
    """Seeded sparse random projection of a list of tensors to ``dim`` numbers."""

    def __init__(self, params: list[Any], dim: int, seed: int) -> None:
        import torch

        gen = torch.Generator().manual_seed(seed)
        self.dim = dim
        self.buckets = [torch.randint(0, dim, (p.numel(),), generator=gen) for p in params]
        self.signs = [torch.randint(0, 2, (p.numel(),), generator=gen).float() * 2 - 1 for p in params]

    def __call__(self, grads: list[Any]) -> np.ndarray:
        import torch

        out = torch.zeros(self.dim, dtype=torch.float64)
        for g, b, s in zip(grads, self.buckets, self.signs):
            if g is not None:
                out.index_add_(0, b, (g.detach().flatten().cpu().float() * s).double())
        return out.numpy()


def _loss(model: Any, enc: dict):
    import torch

    device = next(model.parameters()).device
    ids = torch.tensor([enc["input_ids"]], device=device)
    labels = torch.tensor([enc["labels"]], device=device)
    logits = model(input_ids=ids, use_cache=False).logits[:, :-1].float()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)


def _gradient_features(model: Any, encs: list[dict], dim: int, seed: int, progress: bool, label: str) -> tuple[np.ndarray, list[str]]:
    import torch

    names, params = select_parameters(model)
    sketch = CountSketch(params, dim, seed)
    flags = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    feats = np.zeros((len(encs), dim))
    try:
        for i, enc in enumerate(_track(encs, label, progress)):
            grads = torch.autograd.grad(_loss(model, enc), params, allow_unused=True)
            feats[i] = sketch(list(grads))
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)
    return feats, names


def _representation_features(model: Any, encs: list[dict], progress: bool, label: str) -> np.ndarray:
    import torch

    device = next(model.parameters()).device
    rows = []
    with torch.no_grad():
        for enc in _track(encs, label, progress):
            out = model(input_ids=torch.tensor([enc["input_ids"]], device=device), output_hidden_states=True, use_cache=False)
            hidden = out.hidden_states[-1][0].float()
            mask = torch.tensor([lab != -100 for lab in enc["labels"]], device=device)
            rows.append(hidden[mask].mean(0).double().cpu().numpy())
    return np.stack(rows)


def _track(items: list, label: str, enabled: bool):
    if not enabled or len(items) < 2:
        return items
    from rich.progress import track

    return track(items, description=label, transient=True)


def _cache_key(records: list[dict], info: dict) -> str:
    h = hashlib.sha256(json.dumps(info, sort_keys=True, default=str).encode())
    for r in records:
        h.update(json.dumps(_conversation(r), sort_keys=True).encode())
    return h.hexdigest()[:20]


def train_attribution(
    source: str | Path | tuple[Any, Any, list[dict]],
    messages: list[dict],
    response: str,
    k: int = 10,
    method: str = "gradient",
    *,
    proj_dim: int = 1024,
    max_length: int | None = None,
    normalize: bool = True,
    seed: int = 0,
    progress: bool = False,
    notes: dict | None = None,
    cache_dir: str | Path | None = None,
) -> list[dict]:
    """Rank training examples by influence on ``response`` to ``messages``; top ``k`` with provenance.

    ``source`` is a ``tunelens train`` run directory or ``(model, tokenizer, train_records)``.
    Examples that cannot be scored (no assistant turn, nothing supervised after truncation) are
    listed in ``notes["skipped"]`` with the reason when a ``notes`` dict is given (``notes["n_scored"]``
    counts the scored ones). Projected training
    gradients are cached under ``cache_dir`` (default for a run directory: RUN/explain_cache).
    """
    from tunelens.explain.encoding import validate_messages

    if method not in METHODS:
        raise TunelensError(f"unknown training-data attribution method {method!r}: use one of {', '.join(METHODS)}")
    if k < 1:
        raise TunelensError(f"k must be >= 1, got {k}")
    validate_messages(messages)
    if not response or not response.strip():
        raise TunelensError("train_attribution needs a non-empty response")
    if isinstance(source, (str, Path)):
        model, tokenizer, records, info = load_run(source)
        max_length = max_length or info.get("max_length")
        cache_dir = cache_dir or Path(source) / "explain_cache"
    else:
        try:
            model, tokenizer, records = source
        except (TypeError, ValueError):
            raise TunelensError("train_attribution source must be a run directory or (model, tokenizer, train_records)") from None
        records = list(records)
        info = {"model_id": getattr(getattr(model, "config", None), "_name_or_path", "")}
    if not records:
        raise TunelensError("no training records to rank")

    encs, kept, skipped = [], [], []
    for i, rec in enumerate(records):
        conv = _conversation(rec) if isinstance(rec, dict) else None
        reason = None
        if not conv:
            reason = "not a conversation or preference record"
        else:
            try:
                enc = _encode(tokenizer, conv, max_length)
                reason = None if enc else "no assistant token left after truncation"
            except TunelensError as exc:
                reason = str(exc)
        if reason:
            skipped.append({"index": i, "id": rec.get("id") if isinstance(rec, dict) else None, "reason": reason})
        else:
            encs.append(enc)
            kept.append(i)
    if notes is not None:
        notes["skipped"] = skipped
        notes["n_scored"] = len(kept)
    if not encs:
        raise TunelensError(f"none of the {len(records)} training records could be scored: {skipped[0]['reason']}")
    query = _encode(tokenizer, list(messages) + [{"role": "assistant", "content": response}], max_length)
    if query is None:
        raise TunelensError("the response has no tokens left to score after truncation to max_length")

    if method == "gradient":
        names, params = select_parameters(model)
        # The weights' own checksum keys the cache, so a retrained adapter never reuses stale gradients.
        weights = [round(float(p.detach().double().sum()), 6) for p in params] + [round(float(p.detach().double().abs().sum()), 6) for p in params]
        key = _cache_key(records, {"model_id": info.get("model_id"), "dim": proj_dim, "seed": seed,
                                   "max_length": max_length, "params": names, "weights": weights})
        cached = Path(cache_dir) / f"tda_{key}.npy" if cache_dir is not None else None
        if cached is not None and cached.is_file():
            train_feats = np.load(cached)
        else:
            train_feats, _ = _gradient_features(model, encs, proj_dim, seed, progress, "training gradients")
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.save(cached, train_feats)
        query_feat, _ = _gradient_features(model, [query], proj_dim, seed, False, "")
    else:
        train_feats = _representation_features(model, encs, progress, "training representations")
        query_feat = _representation_features(model, [query], False, "")
    scores = train_feats @ query_feat[0]
    if normalize or method == "representation":
        norms = np.linalg.norm(train_feats, axis=1) * np.linalg.norm(query_feat[0])
        scores = np.divide(scores, norms, out=np.zeros_like(scores), where=norms > 0)
    order = np.argsort(-scores, kind="stable")[:k]
    out = []
    for rank, j in enumerate(order, 1):
        rec = records[kept[j]]
        conv = _conversation(rec)
        prov = rec.get("provenance") or {}
        out.append({
            "rank": rank,
            "score": float(scores[j]),
            "method": method,
            "index": kept[j],
            "id": rec.get("id"),
            "provenance": {key: prov.get(key) for key in ("source", "source_file", "row", "license", "sha256")},
            "prompt": next((m["content"] for m in reversed(conv) if m.get("role") == "user"), "")[:300],
            "response": next((m["content"] for m in reversed(conv) if m.get("role") == "assistant"), "")[:300],
        })
    return out
