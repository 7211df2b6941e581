"""Guardrails around one exchange: injection detection, PII redaction, output toxicity.

Injection is scanned in the turns of the roles ``guardrails.injection.scan_roles`` names (user,
system, developer, forged assistant turns; ``tool``: context documents), and in each two
consecutive scanned turns of one role joined (``split_turns``).

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
    def check_input(self, messages: list[dict[str, str]], documents: list[str],
                    roles: list[str] | None = None) -> InputCheck:
        """``roles``: each message's role as the client sent it (``developer`` turns reach the model
        as ``system``); by default the messages' own roles."""
        check = InputCheck(messages=[dict(m) for m in messages], documents=list(documents))
        if roles is not None and len(roles) != len(messages):
            raise ValueError(f"check_input: {len(roles)} roles for {len(messages)} messages")
        self._check_injection(check, roles or [m["role"] for m in messages])
        if not check.blocked:
            self._redact_input(check)
        return check

    def _check_injection(self, check: InputCheck, roles: list[str]) -> None:
        cfg = self.cfg.injection
        if not cfg.enabled:
            check.decisions["injection"] = {"enabled": False}
            return
        if self._injection is None:
            check.decisions["injection"] = {"enabled": True, "available": False, "reason": self._injection_error}
            return
        scanned = [i for i, r in enumerate(roles) if r in cfg.scan_roles]
        docs = check.documents if "tool" in cfg.scan_roles else []
        # an attack split across two turns: each two consecutive scanned turns of one role, joined
        pairs: list[tuple[int, int]] = []
        if cfg.split_turns:
            for role in dict.fromkeys(roles[i] for i in scanned):
                same = [i for i in scanned if roles[i] == role]
                pairs += list(zip(same, same[1:]))
        texts = ([check.messages[i]["content"] for i in scanned] + docs
                 + [check.messages[i]["content"] + "\n" + check.messages[j]["content"] for i, j in pairs])
        threshold = self._injection.threshold if cfg.threshold is None else cfg.threshold
        tool_threshold = threshold if cfg.tool_threshold is None else cfg.tool_threshold
        # tool turns, documents and joined tool turns read with tool_threshold; every other turn with threshold
        per_text = ([tool_threshold if roles[i] == "tool" else threshold for i in scanned] + [tool_threshold] * len(docs)
                    + [tool_threshold if roles[i] == "tool" else threshold for i, _ in pairs])
        results = self._injection.detect(texts, threshold=per_text)
        msg_res = results[: len(scanned)]
        doc_res = results[len(scanned): len(scanned) + len(docs)]
        pair_res = results[len(scanned) + len(docs):]
        flagged_msgs = [{"message": i, "role": roles[i], **r.to_dict()} for i, r in zip(scanned, msg_res) if r.flagged]
        flagged_docs = [{"document": j, **r.to_dict()} for j, r in enumerate(doc_res) if r.flagged]
        alone = {f["message"] for f in flagged_msgs}
        flagged_splits = [{"messages": [i, j], "role": roles[i], **r.to_dict()} for (i, j), r in zip(pairs, pair_res)
                          if r.flagged and i not in alone and j not in alone]
        decision: dict[str, Any] = {
            "enabled": True, "available": True, "threshold": threshold, "tool_threshold": tool_threshold,
            "scan_roles": list(cfg.scan_roles),
            "scanned_messages": len(scanned), "scanned_documents": len(docs), "scanned_splits": len(pairs),
            "max_score": round(max((r.score for r in results), default=0.0), 4),
            "flagged_messages": flagged_msgs, "flagged_documents": flagged_docs, "flagged_splits": flagged_splits,
            "action": "none",
        }
        if flagged_msgs or flagged_splits:
            decision["action"] = cfg.input_action
            if cfg.input_action == "block":
                if flagged_msgs:
                    where = f"a {flagged_msgs[0]['role']} message"
                else:
                    where = "two {role} messages joined ({messages[0]} and {messages[1]})".format(**flagged_splits[0])
                check.blocked, check.block_reason = True, f"prompt injection detected in {where}"
        if flagged_docs and not check.blocked:
            if cfg.document_action == "block":
                decision["action"] = "block"
                check.blocked, check.block_reason = True, "prompt injection detected in a context document"
            elif cfg.document_action == "strip":
                drop = {d["document"] for d in flagged_docs}
                check.documents = [d for j, d in enumerate(check.documents) if j not in drop]
                decision["action"] = "strip" if decision["action"] == "none" else f"{decision['action']}+strip"
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
                scorer = _toxicity_scorer()
                score = float(scorer.score([text])[0]) if text else 0.0
            except Exception as exc:  # missing module or artifact: say so, do not pretend
                decisions["toxicity"] = {"enabled": True, "available": False, "reason": f"{type(exc).__name__}: {exc}"}
            else:
                threshold = tox.threshold if tox.threshold is not None else float(scorer.threshold)
                refused = score >= threshold
                decisions["toxicity"] = {"enabled": True, "available": True, "score": round(score, 4),
                                         "threshold": threshold, "action": "refuse" if refused else "none"}
                if refused:
                    text = tox.refusal_message
        pii = self.cfg.pii
        if pii.enabled and pii.redact_output:
            text, counts = _redact(text)
            decisions["pii_output"] = {"enabled": True, "redacted": counts}
        else:
            decisions["pii_output"] = {"enabled": False}
        return text, decisions, refused
