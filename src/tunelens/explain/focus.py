"""Instruction focus: the share of attribution mass on the instruction span vs the context span.

Each item is a conversation record whose ``meta`` carries ``instruction_span`` and
``context_span``: [start, end) character offsets into the content of the last user message.
The share for an item is |attribution| summed over instruction tokens divided by that over
instruction + context tokens (template tokens never count). ``length_share`` gives the same
ratio in token counts: the share a method with no preference would give.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tunelens.errors import TunelensError
from tunelens.explain.attribution import attribute
from tunelens.explain.encoding import tokens_in_char_span
from tunelens.explain.methods import DEFAULT


def _split_item(item: dict, where: str) -> tuple[list[dict], str | None, int, tuple[int, int], tuple[int, int]]:
    messages = item.get("messages") if isinstance(item, dict) else None
    if not isinstance(messages, list) or not messages:
        raise TunelensError(f"{where}: expected a conversation record with 'messages'")
    response = None
    if messages[-1].get("role") == "assistant":
        response, messages = messages[-1].get("content"), messages[:-1]
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not users:
        raise TunelensError(f"{where}: no user message to find the instruction in")
    content = messages[users[-1]].get("content", "")
    meta = item.get("meta") or {}
    spans = []
    for name in ("instruction_span", "context_span"):
        span = meta.get(name)
        if not (isinstance(span, (list, tuple)) and len(span) == 2 and all(isinstance(x, int) for x in span)):
            raise TunelensError(f"{where}: meta.{name} must be [start, end) character offsets, got {span!r}")
        if not 0 <= span[0] < span[1] <= len(content):
            raise TunelensError(f"{where}: meta.{name}={list(span)} is outside the last user message ({len(content)} chars)")
        spans.append((span[0], span[1]))
    return messages, response, users[-1], spans[0], spans[1]


def bootstrap_ci(values: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> list[float]:
    """Percentile bootstrap CI of the mean."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(1)
    alpha = (1 - level) / 2
    return [float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))]


def _unpack(model: Any) -> tuple[Any, Any]:
    if isinstance(model, tuple):
        return model
    if hasattr(model, "model") and hasattr(model, "tokenizer"):
        return model.model, model.tokenizer
    raise TunelensError("expected a LoadedModel or a (model, tokenizer) pair")


def instruction_focus(
    model: Any, tokenizer: Any, items: list[dict], method: str = DEFAULT, *,
    max_new_tokens: int = 32, n_boot: int = 2000, seed: int = 0, progress: bool = False, skip_errors: bool = False,
    faithfulness_options: dict[str, Any] | None = None, **method_kwargs: Any,
) -> dict[str, Any]:
    """Per-item instruction-mass shares and their mean with a bootstrap CI.

    An item with an assistant turn is explained on that response; otherwise the model's own
    greedy response is generated. With ``skip_errors`` an item that cannot be explained (too long
    for the context, empty generation) keeps its row with a null share and the reason under
    ``skipped``, so rows stay paired across models; otherwise its error is raised.

    ``faithfulness_options`` (None: no check) runs ``faithfulness()`` on each item's attribution
    too: its rows get ``comprehensiveness_gain``, ``sufficiency_gain`` (over random tokens of the
    same count) and ``better_than_random``, and the result a ``faithfulness`` summary with CIs.
    """
    from tunelens.explain.faithfulness import faithfulness

    if not items:
        raise TunelensError("instruction_focus needs at least one item")
    rows = []
    iterator = _progress(items, "instruction focus", progress)
    for n, item in enumerate(iterator):
        where = f"item {n} ({item.get('id', '?') if isinstance(item, dict) else '?'})"
        messages, response, user_idx, instr, ctx = _split_item(item, where)
        try:
            attr = attribute(model, tokenizer, messages, response, method, max_new_tokens=max_new_tokens, **method_kwargs)
        except TunelensError as exc:
            if not skip_errors:
                raise
            rows.append({"id": item.get("id", str(n)), "instruction_share": float("nan"), "skipped": str(exc)})
            continue
        enc = attr.encoding()
        instr_tok = tokens_in_char_span(enc, user_idx, *instr)
        ctx_tok = [t for t in tokens_in_char_span(enc, user_idx, *ctx) if t not in set(instr_tok)]
        mass = np.abs(attr.matrix).sum(0)
        total = mass[instr_tok].sum() + mass[ctx_tok].sum()
        row = {
            "id": item.get("id", str(n)),
            "instruction_share": float(mass[instr_tok].sum() / total) if total > 0 else float("nan"),
            "length_share": len(instr_tok) / max(1, len(instr_tok) + len(ctx_tok)),
            "instruction_tokens": len(instr_tok),
            "context_tokens": len(ctx_tok),
            "response": attr.response,
        }
        if faithfulness_options is not None:
            f = faithfulness(model, tokenizer, attr, **faithfulness_options)
            row.update({k: f[k] for k in ("comprehensiveness_gain", "sufficiency_gain", "better_than_random")})
            row["faithfulness"] = f
        rows.append(row)
    shares = np.array([r["instruction_share"] for r in rows])
    valid = shares[~np.isnan(shares)]
    lengths = [r["length_share"] for r in rows if "length_share" in r]
    result = {
        "method": method,
        "params": {k: v for k, v in method_kwargs.items() if not callable(v)},
        "n": int(len(valid)),
        "items": rows,
        "mean": float(valid.mean()) if len(valid) else float("nan"),
        "ci95": bootstrap_ci(valid, n_boot, seed),
        "length_share_mean": float(np.mean(lengths)) if lengths else float("nan"),
        "skipped": [{"id": r["id"], "reason": r["skipped"]} for r in rows if "skipped" in r],
    }
    if faithfulness_options is not None:
        result["faithfulness"] = faithfulness_summary(rows, n_boot, seed)
        result["faithfulness_options"] = dict(faithfulness_options)
    return result


def faithfulness_summary(rows: list[dict], n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Mean comprehensiveness and sufficiency gains over random tokens (bootstrap CIs), and the
    share of items whose attribution beat random on both (Wilson CI)."""
    from tunelens.safety.instruments.correction import wilson_interval

    done = [r for r in rows if "comprehensiveness_gain" in r]
    out: dict[str, Any] = {"n": len(done)}
    for key in ("comprehensiveness_gain", "sufficiency_gain"):
        vals = np.array([r[key] for r in done], dtype=float)
        out[key] = {"mean": float(vals.mean()) if len(vals) else float("nan"), "ci95": bootstrap_ci(vals, n_boot, seed)}
    wins = sum(bool(r["better_than_random"]) for r in done)
    lo, hi = wilson_interval(wins, len(done)) if done else (float("nan"), float("nan"))
    out["better_than_random"] = {"k": wins, "n": len(done), "rate": wins / len(done) if done else float("nan"),
                                 "ci95": [lo, hi]}
    return out


def paired_item_difference(base: dict, tuned: dict, key: str, n_boot: int = 2000, seed: int = 0
                           ) -> tuple[float, list[float], int]:
    """Mean of tuned - base of per-item ``key`` over the items both ``instruction_focus`` results scored
    (a missing or NaN value drops the pair), its bootstrap CI and the number of pairs."""
    diffs = np.array([tr.get(key, np.nan) - br.get(key, np.nan) for br, tr in zip(base["items"], tuned["items"])],
                     dtype=float)
    diffs = diffs[~np.isnan(diffs)]
    return (float(diffs.mean()) if len(diffs) else float("nan")), bootstrap_ci(diffs, n_boot, seed), int(len(diffs))


def paired_focus_difference(base: dict, tuned: dict, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """tuned - base instruction share over paired items (two ``instruction_focus`` results), with a bootstrap CI."""
    mean, ci, n = paired_item_difference(base, tuned, "instruction_share", n_boot, seed)
    if np.isnan(ci[0]):
        reading = "too few items for a confidence interval"
    elif ci[0] > 0:
        reading = "tuning moved attribution towards the instruction"
    elif ci[1] < 0:
        reading = "tuning moved attribution away from the instruction"
    else:
        reading = "no significant change in instruction focus"
    return {"difference_mean": mean, "difference_ci95": ci, "n": n, "reading": reading}


def compare_instruction_focus(
    base: Any, tuned: Any, items: list[dict], method: str = DEFAULT, *,
    n_boot: int = 2000, seed: int = 0, progress: bool = False, **kwargs: Any,
) -> dict[str, Any]:
    """Base vs tuned instruction focus on the same items, with a paired bootstrap CI of tuned - base.

    ``base`` and ``tuned`` are LoadedModels or (model, tokenizer) pairs; each explains its own response.
    """
    b = instruction_focus(*_unpack(base), items, method, n_boot=n_boot, seed=seed, progress=progress, **kwargs)
    t = instruction_focus(*_unpack(tuned), items, method, n_boot=n_boot, seed=seed, progress=progress, **kwargs)
    return {"method": method, "base": b, "tuned": t, **paired_focus_difference(b, t, n_boot, seed)}


def alpaca_focus_items(path: str | Path, n: int = 20, seed: int = 0) -> list[dict]:
    """Items from Alpaca rows that have a separate ``input``: instruction + blank line + input."""
    from tunelens.records import make_conversation

    try:
        rows = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TunelensError(f"cannot read Alpaca data {path}: {exc}") from exc
    with_input = [(i, r) for i, r in enumerate(rows) if isinstance(r, dict) and str(r.get("input", "")).strip()]
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(with_input), size=min(n, len(with_input)), replace=False))
    items = []
    for p in picked:
        row_idx, row = with_input[int(p)]
        instr, ctx = row["instruction"].strip(), row["input"].strip()
        content = f"{instr}\n\n{ctx}"
        items.append(make_conversation(
            [{"role": "user", "content": content}], source="alpaca", source_file=str(path), row=row_idx,
            license="CC-BY-NC-4.0",
            meta={"instruction_span": [0, len(instr)], "context_span": [len(instr) + 2, len(content)]},
        ))
    return items


def _progress(items: list, label: str, enabled: bool):
    if not enabled:
        return items
    from rich.progress import track

    return track(items, description=label, transient=True)
