"""Candidate 11 for the injection detector (``injection-lm``): the default detector stacked with what SmolLM2 makes of
the text. **Decided by its pre-registered rule and not adopted; it is not a registered instrument.** Kept so that the
decision reproduces (``python -m tunelens.safety.train_injection_lm --base v9 --out DIR``, then
``benchmarks/injection_decision.py --base v9 --lm DIR``) and a later candidate can start from it.

The default injection instrument (:mod:`tunelens.safety.instruments.injection`) reads character and word n-grams
through several views and misses attacks whose words are ordinary and whose intent is not. This candidate adds a
probe:

- ``p_probe``: the embedded SmolLM2-135M-Instruct reads the normalised text (its first ``HEAD_TOKENS`` and last
  ``TAIL_TOKENS`` tokens; an instruction hidden at a document's end is read); the hidden states of the layers the
  model names (of ``LAYERS``) are averaged over the tokens, and a standardised logistic regression gives
  P(injection);
- ``p_default``: the default instrument's score (max over its views and rules);
- score: a logistic regression over the two logits, fitted on out-of-fold scores of the default instrument's
  training rows; ``injection`` when it reaches the model's threshold, else ``benign``.

The decision (docs/instruments/preregistration/injection-lm.md, the injection card's changes): on the authors that
had served earlier decisions it raised direct recall from 0.955 to 0.981, but on the fresh author 17 it flagged nine
more benign look-alikes for four more attacks caught, so the measure fell and the rule said no. It costs about
350 s per 10,000 texts on the 2-core CPU (a forward pass of 16 of SmolLM2's 30 layers), against a few seconds for
the default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from tunelens.safety.instruments._base import Example, Verdict, get_instrument
from tunelens.safety.instruments.injection import normalise
from tunelens.safety.instruments.refusal_lm import BASE_MODEL, ProbeInstrument, probe_scores, reader, stacked

LAYERS = (4, 8, 12, 16)  # read and kept; the model names the ones its probe uses
HEAD_TOKENS = 48
TAIL_TOKENS = 48


def window(ids: list[int]) -> list[int]:
    """A text's tokens as the probe reads them: all of them, or the first HEAD_TOKENS and the last TAIL_TOKENS."""
    return ids if len(ids) <= HEAD_TOKENS + TAIL_TOKENS else ids[:HEAD_TOKENS] + ids[-TAIL_TOKENS:]


def features(texts: list[str], spec: str = BASE_MODEL) -> Any:
    """SmolLM2's hidden states of ``LAYERS``, each averaged over the text's tokens (``window``), concatenated."""
    r = reader(spec)
    ids = [window(r.tok(normalise(t or "") or " ", add_special_tokens=False)["input_ids"]) or [r.tok.eos_token_id]
           for t in texts]
    return r.pooled(ids, None, LAYERS, by_length=True)


def layer_columns(layers: tuple[int, ...] | list[int], width: int) -> list[int]:
    """The feature columns of ``layers`` (each of LAYERS is ``width`` columns wide)."""
    return [LAYERS.index(k) * width + j for k in layers for j in range(width)]


class InjectionLMInstrument(ProbeInstrument):
    """Candidate 11, scored from a model the trainer wrote (``InjectionLMInstrument(DIR / "injection_lm.joblib")``);
    not registered, as its decision did not adopt it (see the module doc)."""

    task: ClassVar[str] = "injection"
    name: ClassVar[str] = "injection-lm"
    labels: ClassVar[tuple[str, ...]] = ("benign", "injection")
    positive: ClassVar[tuple[str, ...]] = ("injection",)
    trainer: ClassVar[str] = "tunelens.safety.train_injection_lm --out DIR"

    def __init__(self, artifact: str | Path, threshold: float | None = None, default: Any = None):
        """``default``: the default injection detector whose score the stack reads (the shipped one if None). The
        stack was fitted on version 9's scores, so to reproduce candidate 11 once a later version ships, pass
        version 9 trained aside (``benchmarks/injection_decision.py --base v9 --lm DIR`` does)."""
        super().__init__(artifact, threshold)
        self.default = default

    def probe_texts(self, texts: list[str]) -> list[float]:
        import numpy as np

        x = np.asarray(features(texts, self._model.get("base_model", BASE_MODEL)))
        return probe_scores(self._model, x[:, layer_columns(self._model["layers"], x.shape[1] // len(LAYERS))])

    def classify(self, examples: list[Example]) -> list[Verdict]:
        if not examples:
            return []
        texts = [e.text for e in examples]
        p_probe = self.probe_texts(texts)
        base = (self.default or get_instrument("injection")).classify(examples)
        out = []
        for pp, v in zip(p_probe, base):
            score = stacked(self._model, [v.score, pp])
            out.append(Verdict("injection" if score >= self.threshold else "benign", score,
                               {"p_probe": round(pp, 4), "p_default": round(v.score, 4)}))
        return out
