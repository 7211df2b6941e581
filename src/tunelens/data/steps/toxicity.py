"""Toxicity filter: any scorer ``texts -> [P(toxic)]``; 'builtin' is tunelens.safety.toxicity."""

from __future__ import annotations

import importlib
import math
from typing import Literal

from pydantic import Field

from tunelens.data.steps.base import Record, Rejection, Scorer, SectionConfig, Step, StepResult, message_fields, prompt_and_responses, register
from tunelens.errors import ConfigError, TunelensError

def resolve_scorer(name: str) -> Scorer:
    """'builtin' -> tunelens.safety.toxicity.load_scorer().score; 'pkg.module:attr' -> that callable."""
    if name == "builtin":
        try:
            module = importlib.import_module("tunelens.safety.toxicity")
        except ModuleNotFoundError as exc:
            raise ConfigError(
                "toxicity.scorer='builtin' needs tunelens.safety.toxicity, which is not available "
                f"({exc}); pass a scorer to curate() or name one as 'module:function'"
            ) from None
        return module.load_scorer().score
    module_name, sep, attr = name.partition(":")
    if not sep:
        raise ConfigError(f"toxicity.scorer: {name!r} is neither 'builtin' nor 'module:function'")
    try:
        scorer = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"toxicity.scorer: cannot load {name!r}: {exc}") from None
    if not callable(scorer):
        raise ConfigError(f"toxicity.scorer: {name!r} is not callable")
    return scorer



class ToxicityConfig(SectionConfig):
    enabled: bool = False
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Reject records whose toxicity probability is at least this.")
    scorer: str = Field("builtin", description="'builtin' (tunelens.safety.toxicity) or 'module:function' returning a scorer.")
    fields: Literal["responses", "all"] = Field("responses", description="Score only the replies, or every turn.")
    batch_size: int = Field(64, gt=0)

@register
class Toxicity(Step):
    name = "toxicity"
    order = 100
    config_key = "toxicity"
    config_model = ToxicityConfig

    def __init__(self, config: ToxicityConfig, scorer: Scorer) -> None:
        self.config = config
        self.scorer = scorer

    @classmethod
    def from_config(cls, config, ctx):
        """On when the section enables it or ``curate`` was given a scorer (which then wins)."""
        if not config.enabled and ctx.scorer is None:
            return None
        return cls(config, ctx.scorer or resolve_scorer(config.scorer))

    def _texts(self, rec: Record) -> list[str]:
        if self.config.fields == "all":
            return [text for _, text in message_fields(rec)]
        return prompt_and_responses(rec)[1]

    def run(self, records: list[Record]) -> StepResult:
        owners, texts = [], []
        for i, rec in enumerate(records):
            for text in self._texts(rec):
                owners.append(i)
                texts.append(text)
        scores = [0.0] * len(records)
        bs = self.config.batch_size
        for start in range(0, len(texts), bs):
            batch = texts[start : start + bs]
            out = list(self.scorer(batch))
            if len(out) != len(batch):
                raise TunelensError(f"toxicity scorer returned {len(out)} scores for {len(batch)} texts")
            for owner, value in zip(owners[start : start + bs], out):
                value = float(value)
                if math.isnan(value) or not 0.0 <= value <= 1.0:
                    raise TunelensError(f"toxicity scorer returned {value!r}; expected a probability in [0, 1]")
                scores[owner] = max(scores[owner], value)
        result = StepResult(kept=[])
        for rec, score in zip(records, scores):
            if score >= self.config.threshold:
                result.rejected.append(Rejection(rec, f"toxic: score {score:.2f} >= {self.config.threshold}", {"score": round(score, 4)}))
            else:
                result.kept.append(rec)
        result.stats.update(threshold=self.config.threshold, scored_texts=len(texts))
        return result
