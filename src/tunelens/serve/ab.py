"""Blind A/B human evaluation: two served models answer one prompt in random left/right order.

The automatic metric the human choices are compared with is the length-normalised log-probability
of each response (mean log-prob per response token) under a judge model (`ab.judge_model`,
default the first served model): the metric prefers the response with the higher value, or calls
a tie when they are within `METRIC_TIE_MARGIN` nats. Agreement is Cohen's kappa over judged pairs.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import uuid
from typing import Any

from sqlalchemy import select

from tunelens.serve.db import ABJudgment, utcnow
from tunelens.serve.schemas import ABJudgeRequest, ABPairRequest

METRIC_TIE_MARGIN = 0.05


def mean_logprob(model: Any, tokenizer: Any, messages: list[dict[str, str]], response: str) -> float | None:
    """Mean log-prob per token of ``response`` after the chat-templated ``messages``."""
    import torch

    from tunelens.generate import render_prompt

    prompt_ids = tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]
    resp_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    if not resp_ids:
        return None
    ids = torch.tensor([prompt_ids + resp_ids], device=next(model.parameters()).device)
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1:-1].float()
    logp = torch.log_softmax(logits, -1).gather(1, ids[0, len(prompt_ids):, None]).squeeze(1)
    return float(logp.mean())


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def metric_choice(left: float | None, right: float | None) -> str | None:
    if left is None or right is None:
        return None
    if abs(left - right) <= METRIC_TIE_MARGIN:
        return "tie"
    return "left" if left > right else "right"


def summarise(rows: list[ABJudgment], model_a: str, model_b: str) -> dict[str, Any]:
    """Win rates with Wilson CIs per model, and Cohen's kappa (human vs metric)."""
    judged = [r for r in rows if r.choice is not None]
    n = len(judged)
    wins = {model_a: 0, model_b: 0}
    ties = 0
    human, auto = [], []
    for r in judged:
        winner = {"left": r.left_model, "right": r.right_model}.get(r.choice)
        if winner is None:
            ties += 1
        elif winner in wins:
            wins[winner] += 1
        m = metric_choice(r.metric_left, r.metric_right)
        if m is not None:
            # Labels in model terms, so left/right randomisation does not matter.
            to_label = {"left": r.left_model, "right": r.right_model, "tie": "tie"}
            human.append(to_label[r.choice])
            auto.append(to_label[m])
    per_model = {}
    for name in (model_a, model_b):
        lo, hi = wilson(wins[name], n)
        per_model[name] = {"wins": wins[name], "win_rate": round(wins[name] / n, 4) if n else None,
                           "ci95": [round(lo, 4), round(hi, 4)]}
    agreement: dict[str, Any] = {"metric": "length-normalised log-prob under the judge model",
                                 "n": len(human), "kappa": None}
    if len(human) >= 2:
        from sklearn.metrics import cohen_kappa_score

        if len(set(human) | set(auto)) < 2:
            agreement["reason"] = "kappa undefined: only one label seen"
        else:
            k = cohen_kappa_score(human, auto, labels=[model_a, model_b, "tie"])
            agreement["kappa"] = None if math.isnan(k) else round(float(k), 4)
            agreement["raw_agreement"] = round(sum(h == a for h, a in zip(human, auto)) / len(human), 4)
    else:
        agreement["reason"] = "need at least 2 judged pairs with metric scores"
    lo, hi = wilson(ties, n)
    return {"models": [model_a, model_b], "judged": n, "pending": len(rows) - n, "per_model": per_model,
            "ties": {"count": ties, "rate": round(ties / n, 4) if n else None, "ci95": [round(lo, 4), round(hi, 4)]},
            "agreement": agreement}


def register_ab(app, runtime, require_caller, APIError, require_storage, write) -> None:
    from fastapi import Depends

    from tunelens.serve.keys import Caller

    def pair_names() -> tuple[str, str]:
        pair = runtime.config.ab_pair()
        if pair is None:
            raise APIError(409, "A/B needs two served models (list two under `models`, or set ab.models)",
                           "invalid_request_error", "ab_not_configured")
        return pair

    @app.post("/v1/ab/pair")
    async def ab_pair(body: ABPairRequest, caller: Caller = Depends(require_caller)):
        from tunelens.generate import GenerationParams, PromptTooLongError

        a, b = pair_names()
        limits = runtime.config.limits
        max_tokens = body.max_tokens or limits.default_max_tokens
        if max_tokens > limits.max_tokens:
            raise APIError(400, f"max_tokens={max_tokens} exceeds this server's limit of {limits.max_tokens}",
                           "invalid_request_error", "max_tokens_exceeded", "max_tokens")
        check = await asyncio.to_thread(runtime.guards.check_input, [{"role": "user", "content": body.prompt}], [])
        if check.blocked:
            raise APIError(400, f"prompt rejected by guardrails: {check.block_reason}", "invalid_request_error",
                           "guardrail_blocked", "prompt")
        messages = check.messages
        await require_storage(runtime)  # a pair that cannot be stored is not worth generating
        params = GenerationParams(max_new_tokens=max_tokens)
        try:
            ra, rb = await asyncio.gather(runtime.model(a).batcher.submit(messages, params),
                                          runtime.model(b).batcher.submit(messages, params))
        except PromptTooLongError as exc:
            raise APIError(400, str(exc), "invalid_request_error", "context_length_exceeded", "prompt") from None
        ta, _, _ = await asyncio.to_thread(runtime.guards.check_output, ra.text)
        tb, _, _ = await asyncio.to_thread(runtime.guards.check_output, rb.text)
        judge = runtime.model(runtime.config.ab.judge_model or runtime.config.models[0].name)
        loop = asyncio.get_running_loop()
        ma, mb = [await loop.run_in_executor(judge.batcher.executor, mean_logprob, judge.loaded.model,
                                             judge.loaded.tokenizer, messages, t) for t in (ta, tb)]
        swap = secrets.randbelow(2) == 1
        left, right = ((b, tb, mb), (a, ta, ma)) if swap else ((a, ta, ma), (b, tb, mb))
        pair_id = "ab-" + uuid.uuid4().hex

        def save():
            # prompt and both responses are redacted by their column type (RedactedText), whatever
            # guardrails.pii.redact_output says about what the client sees
            with runtime.store.session.begin() as s:
                s.add(ABJudgment(id=pair_id, api_key_id=caller.id, prompt=body.prompt,
                                 left_model=left[0], right_model=right[0], left_response=left[1],
                                 right_response=right[1], metric_left=left[2], metric_right=right[2]))

        await asyncio.to_thread(write, runtime, save)
        return {"pair_id": pair_id, "prompt": body.prompt, "left": left[1], "right": right[1]}

    @app.post("/v1/ab/judge")
    async def ab_judge(body: ABJudgeRequest, caller: Caller = Depends(require_caller)):
        def judge():
            with runtime.store.session.begin() as s:
                row = s.get(ABJudgment, body.pair_id)
                # another key's pair answers like a missing one (admin keys may judge any pair)
                if row is None or not (caller.is_admin or row.api_key_id == caller.id):
                    raise APIError(404, f"no A/B pair {body.pair_id!r} for this key", "invalid_request_error",
                                   "pair_not_found", "pair_id")
                if row.choice is not None:
                    raise APIError(409, f"A/B pair {body.pair_id!r} was already judged", "invalid_request_error",
                                   "already_judged", "pair_id")
                row.choice, row.judged_at = body.choice, utcnow()
                return {"pair_id": row.id, "choice": row.choice, "left_model": row.left_model,
                        "right_model": row.right_model}

        return await asyncio.to_thread(write, runtime, judge)

    @app.get("/v1/ab/results")
    async def ab_results(_caller: Caller = Depends(require_caller)):
        a, b = pair_names()

        def load():
            with runtime.store.session() as s:
                return list(s.scalars(select(ABJudgment).where(
                    ABJudgment.left_model.in_([a, b]), ABJudgment.right_model.in_([a, b]))))

        return summarise(await asyncio.to_thread(load), a, b)
