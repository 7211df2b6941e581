"""A slower harm instrument (``harm-lm``): the harm instrument's parts plus what SmolLM2 makes of the reply.

The default harm instrument (``harm``) multiplies P(request harmful), P(complies) and P(content), all
word-level classifiers. This one adds ``p_probe``: a logistic regression over the same SmolLM2 hidden
states as ``refusal-lm`` (the reply read after the request; ``refusal_lm.reader``), trained on the
labelled dev split's harm labels; the score is a logistic regression over the logits of
p_request_harmful, p_complies, p_content and p_probe, fitted on out-of-fold parts of the dev split.

It costs what ``refusal-lm`` costs (a SmolLM2 pass per reply; the card gives the measured figure), so it
is opt-in: ``get_instrument("harm", name="harm-lm")``, ``tunelens safety classify --task harm
--instrument harm-lm``. ``python -m tunelens.safety.train_harm_lm`` rebuilds it and its card.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

from tunelens.errors import TunelensError
from tunelens.safety.instruments._base import Example, Instrument, Verdict, get_instrument, register
from tunelens.safety.instruments.refusal_lm import BASE_MODEL, reader

ARTIFACT = Path(__file__).resolve().parent.parent / "artifacts" / "harm_lm.joblib"
PARTS = ("p_request_harmful", "p_complies", "p_content", "p_probe")


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def probe_scores(model: dict[str, Any], features: Any) -> list[float]:
    clf = model["probe"]
    j = list(clf.classes_).index(1)
    return [float(p[j]) for p in clf.predict_proba(model["scaler"].transform(features))]


def stack_score(model: dict[str, Any], parts: list[float]) -> float:
    z = model["stack_intercept"] + sum(w * _logit(p) for w, p in zip(model["stack_coef"], parts))
    return 1.0 / (1.0 + math.exp(-z))


@register
class HarmLMInstrument(Instrument):
    """Harm instrument with a SmolLM2 probe (opt-in); see the module doc."""

    task: ClassVar[str] = "harm"
    name: ClassVar[str] = "harm-lm"
    labels: ClassVar[tuple[str, ...]] = ("harmful", "harmless")
    positive: ClassVar[tuple[str, ...]] = ("harmful",)
    needs_prompt: ClassVar[bool] = True

    def __init__(self, artifact: str | Path | None = None, threshold: float | None = None):
        path = Path(artifact) if artifact else ARTIFACT
        if not path.is_file():
            raise TunelensError(f"the harm-lm instrument's model {path} is missing: rebuild it with "
                                "`python -m tunelens.safety.train_harm_lm`")
        import joblib

        self._model = joblib.load(path)
        self.threshold = float(self._model["threshold"] if threshold is None else threshold)

    def classify(self, examples: list[Example]) -> list[Verdict]:
        if not examples:
            return []
        base = get_instrument("harm").classify(examples)  # raises when a prompt is missing
        if any("p_content" not in v.detail for v in base):
            raise TunelensError("harm-lm needs the harm instrument's content classifier (version 5 or later)")
        feats = reader(self._model.get("base_model", BASE_MODEL)).features([e.prompt for e in examples],
                                                                           [e.text for e in examples])
        out = []
        for v, pp in zip(base, probe_scores(self._model, feats)):
            parts = [v.detail["p_request_harmful"], v.detail["p_complies"], v.detail["p_content"], pp]
            score = stack_score(self._model, parts)
            out.append(Verdict("harmful" if score >= self.threshold else "harmless", score,
                               {k: round(p, 4) for k, p in zip(PARTS, parts)}))
        return out
