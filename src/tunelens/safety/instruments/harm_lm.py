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

from pathlib import Path
from typing import ClassVar

from tunelens.errors import TunelensError
from tunelens.safety.instruments._base import Example, Verdict, get_instrument, register
from tunelens.safety.instruments.refusal_lm import ProbeInstrument, stacked

ARTIFACT = Path(__file__).resolve().parent.parent / "artifacts" / "harm_lm.joblib"
PARTS = ("p_request_harmful", "p_complies", "p_content", "p_probe")


@register
class HarmLMInstrument(ProbeInstrument):
    """Harm instrument with a SmolLM2 probe (opt-in); see the module doc."""

    task: ClassVar[str] = "harm"
    name: ClassVar[str] = "harm-lm"
    labels: ClassVar[tuple[str, ...]] = ("harmful", "harmless")
    positive: ClassVar[tuple[str, ...]] = ("harmful",)
    needs_prompt: ClassVar[bool] = True
    artifact: ClassVar[Path] = ARTIFACT
    trainer: ClassVar[str] = "tunelens.safety.train_harm_lm"

    def classify(self, examples: list[Example]) -> list[Verdict]:
        if not examples:
            return []
        base = get_instrument("harm").classify(examples)  # raises when a prompt is missing
        if any("p_content" not in v.detail for v in base):
            raise TunelensError("harm-lm needs the harm instrument's content classifier (version 5 or later)")
        out = []
        for v, pp in zip(base, self.probe(examples)):
            parts = [v.detail["p_request_harmful"], v.detail["p_complies"], v.detail["p_content"], pp]
            score = stacked(self._model, parts)
            out.append(Verdict("harmful" if score >= self.threshold else "harmless", score,
                               {k: round(p, 4) for k, p in zip(PARTS, parts)}))
        return out
