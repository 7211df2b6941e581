"""Guardrails around one exchange: injection detection, PII redaction, output toxicity.

Each guardrail is switched and tuned in `ServeConfig.guardrails`; every decision is returned to
the client (`tunelens.guardrails` in the response) and logged with the exchange. A guardrail
whose backing module cannot be loaded reports ``available: false`` with the reason instead of
pretending to have run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from tunelens.serve.config import Guardrails


@lru_cache(maxsize=1)
def _toxicity_scorer():
    from tunelens.safety.toxicity import load_scorer

    return load_scorer()


def _redact(text: str) -> tuple[str, dict[str, int]]:
    # Marked as redacted, so storage (whose columns redact every other text) does not redact it again.
    from tunelens.serve.db import redact_text

    return redact_text(text)


@dataclass
class InputCheck:
    messages: list[dict[str, str]]  # what the model will see
    documents: list[str]  # surviving context documents
    decisions: dict[str, Any] = field(default_factory=dict)
    blocked: bool = False
    block_reason: str | None = None


class GuardrailEngine:
    def __init__(self, cfg: Guardrails):
        self.cfg = cfg
        self._injection = None
        self._injection_error: str | None = None
        if cfg.injection.enabled:
            from tunelens.errors import TunelensError
            from tunelens.safety.injection import DEFAULT_ARTIFACT, load_detector

            try:
                self._injection = load_detector(cfg.injection.artifact or DEFAULT_ARTIFACT)
            except TunelensError as exc:
                self._injection_error = str(exc)

    def describe(self) -> dict[str, Any]:
        return self.cfg.model_dump()

    # -- input -----------------------------------------------------------------------------
    def check_input(self, messages: list[dict[str, str]], documents: list[str]) -> InputCheck:
        check = InputCheck(messages=[dict(m) for m in messages], documents=list(documents))
        self._check_injection(check)
        if not check.blocked:
            self._redact_input(check)
        return check

    def _check_injection(self, check: InputCheck) -> None:
        cfg = self.cfg.injection
        if not cfg.enabled:
            check.decisions["injection"] = {"enabled": False}
            return
        if self._injection is None:
            check.decisions["injection"] = {"enabled": True, "available": False, "reason": self._injection_error}
            return
        user_idx = [i for i, m in enumerate(check.messages) if m["role"] == "user"]
        texts = [check.messages[i]["content"] for i in user_idx] + check.documents
        results = self._injection.detect(texts, threshold=cfg.threshold)
        user_res, doc_res = results[: len(user_idx)], results[len(user_idx):]
        flagged_msgs = [{"message": i, **r.to_dict()} for i, r in zip(user_idx, user_res) if r.flagged]
        flagged_docs = [{"document": j, **r.to_dict()} for j, r in enumerate(doc_res) if r.flagged]
        decision: dict[str, Any] = {
            "enabled": True, "available": True, "threshold": cfg.threshold,
            "max_score": round(max((r.score for r in results), default=0.0), 4),
            "flagged_messages": flagged_msgs, "flagged_documents": flagged_docs,
            "action": "none",
        }
        if flagged_msgs:
            decision["action"] = cfg.input_action
            if cfg.input_action == "block":
                check.blocked, check.block_reason = True, "prompt injection detected in the user message"
        if flagged_docs and not check.blocked:
            if cfg.document_action == "block":
                decision["action"] = "block"
                check.blocked, check.block_reason = True, "prompt injection detected in a context document"
            elif cfg.document_action == "strip":
                drop = {d["document"] for d in flagged_docs}
                check.documents = [d for j, d in enumerate(check.documents) if j not in drop]
                decision["action"] = "strip" if not flagged_msgs else f"{decision['action']}+strip"
                decision["stripped_documents"] = sorted(drop)
            elif decision["action"] == "none":
                decision["action"] = "flag"
        check.decisions["injection"] = decision

    def _redact_input(self, check: InputCheck) -> None:
        cfg = self.cfg.pii
        if not (cfg.enabled and cfg.redact_input):
            check.decisions["pii_input"] = {"enabled": False}
            return
        totals: dict[str, int] = {}
        for m in check.messages:
            m["content"], counts = _redact(m["content"])
            for k, v in counts.items():
                totals[k] = totals.get(k, 0) + v
        new_docs = []
        for d in check.documents:
            red, counts = _redact(d)
            new_docs.append(red)
            for k, v in counts.items():
                totals[k] = totals.get(k, 0) + v
        check.documents = new_docs
        check.decisions["pii_input"] = {"enabled": True, "redacted": totals}

    # -- output ----------------------------------------------------------------------------
    def check_output(self, text: str) -> tuple[str, dict[str, Any], bool]:
        """(text to return, decisions, refused?)."""
        decisions: dict[str, Any] = {}
        refused = False
        tox = self.cfg.toxicity
        if not tox.enabled:
            decisions["toxicity"] = {"enabled": False}
        else:
            try:
                score = float(_toxicity_scorer().score([text])[0]) if text else 0.0
            except Exception as exc:  # missing module or artifact: say so, do not pretend
                decisions["toxicity"] = {"enabled": True, "available": False, "reason": f"{type(exc).__name__}: {exc}"}
            else:
                refused = score >= tox.threshold
                decisions["toxicity"] = {"enabled": True, "available": True, "score": round(score, 4),
                                         "threshold": tox.threshold, "action": "refuse" if refused else "none"}
                if refused:
                    text = tox.refusal_message
        pii = self.cfg.pii
        if pii.enabled and pii.redact_output:
            text, counts = _redact(text)
            decisions["pii_output"] = {"enabled": True, "redacted": counts}
        else:
            decisions["pii_output"] = {"enabled": False}
        return text, decisions, refused
