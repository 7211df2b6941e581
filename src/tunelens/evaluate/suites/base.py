"""What an evaluation suite is: which prompts it asks (``build``) and how one output is scored.

A suite builds model-independent ``Item``s once; the runner generates for every model and calls
``score``. Scores are ``{metric: float}`` (or a list of floats for several units per item, e.g.
IFEval's instruction-level accuracy). ``Item.unit`` pairs the same question across models and
variants for the paired bootstrap.

A suite joins the evaluation by being decorated with :func:`register` in a module of this package:
``tunelens.evaluate.suites`` finds it, the config accepts its name (and lists it in ``--help``),
and its class attributes say whether it runs by default, whether it has a k-shot variant and how
many items it takes when no ``--limit`` is given.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tunelens.registry import Registry


@dataclass
class Item:
    suite: str
    id: str
    prompt: list[dict[str, str]] | str
    unit: str = ""
    variant: str = ""
    reference: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.unit = self.unit or self.id


@dataclass
class SuiteContext:
    config: Any  # the run's EvalConfig (evaluate.config imports the suites, so it is not imported here)
    skipped: list[dict] = field(default_factory=list)
    logprob_cache: Any = None  # the model being scored's LogprobCache, set by the runner per model
    # where the multiple-choice suites' continuations are scored instead of the hf model (a LlamaCppBackend, set by
    # the runner per model from generation.logprob_backend), and that backend's own LogprobCache
    logprob_backend: Any = None
    backend_logprob_cache: Any = None
    _toxicity: Any = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path | None:
        return self.config.data_dir

    def subset(self, n_total: int, default: int | None = None, suite: str | None = None) -> list[int]:
        """A seeded subset of ``limit`` indices (all when no limit), in source order. A suite's own
        entry in ``limits`` wins over ``limit``."""
        limits = getattr(self.config, "limits", None) or {}
        limit = limits[suite] if suite in limits else (self.config.limit or default)
        if limit is None or limit >= n_total:
            return list(range(n_total))
        return sorted(random.Random(self.config.seed).sample(range(n_total), limit))

    def toxicity_scorer(self):
        if self._toxicity is None:
            from tunelens.safety.toxicity import load_scorer

            self._toxicity = load_scorer()
        return self._toxicity


class Suite:
    name: ClassVar[str] = ""
    order: ClassVar[int] = 0  # place in the suite lists, in ``--help`` and in results.json
    default: ClassVar[bool] = True  # runs when no suite is named (EvalConfig's default); 'all' runs every suite
    few_shot: ClassVar[bool] = False  # can add a k-shot variant of every item (few_shot.suites)
    default_limit: ClassVar[int | None] = None  # items taken when no --limit is given (None: all)
    generative: ClassVar[bool] = True
    # scores continuations with ``logprob.suite_continuation_logprobs`` (so generation.logprob_backend applies)
    continuations: ClassVar[bool] = False
    metrics: ClassVar[tuple[str, ...]] = ()  # the headline metrics (a run's guards may name these, or name/<part>)
    lower_is_better: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def available(cls) -> bool:
        """Whether this install can run the suite ('all' leaves out the ones that cannot)."""
        return True

    def subset(self, ctx: SuiteContext, n_total: int) -> list[int]:
        """``ctx.subset`` with this suite's ``default_limit``."""
        return ctx.subset(n_total, default=self.default_limit, suite=self.name)

    def build(self, ctx: SuiteContext) -> list[Item]:
        raise NotImplementedError

    def score(self, item: Item, output: str, ctx: SuiteContext) -> dict[str, float | list[float]]:
        raise NotImplementedError

    def score_all(self, items: list[Item], outputs: list[str], ctx: SuiteContext) -> list[dict[str, float | list[float]]]:
        """Scores of many items at once (a suite whose instruments classify in batches overrides it)."""
        return [self.score(item, output, ctx) for item, output in zip(items, outputs)]

    def statistics(self) -> dict[str, Any]:
        """Metrics that are not means of per-item values: ``name -> f(columns) -> value``.

        ``columns`` maps each per-item metric to an array whose last axis runs over the items (the
        same items, in the same order, for every column); ``f`` reduces that axis, so the runner
        can bootstrap it (resampling items, paired across models). BBQ's bias scores are ratios
        of counts and are computed this way.
        """
        return {}

    def instrument_task(self, metric: str) -> str | None:
        """The safety-instrument task (refusal, harm, toxicity) behind a 0/1 rate metric, if any."""
        return None

    def derived(self, unit_scores: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        """Metrics computed across an item's variants (e.g. accuracy drops); none by default."""
        return {}

    def higher_is_better(self, metric: str) -> bool:
        # A k-shot variant's metric (``name_5shot``, ``name_5shot/split``) reads like its zero-shot one,
        # and a breakdown (``name/category``) like its total.
        head = metric.split("/", 1)[0]
        return head not in self.lower_is_better and _KSHOT.sub("", head) not in self.lower_is_better

    def accuracy_metric(self, variant: str) -> str | None:
        """The per-item 0/1 accuracy of a variant, for suites with a k-shot variant; None otherwise."""
        return None


_KSHOT = re.compile(r"_\d+shot(?=/|$)")


def user(text: str) -> list[dict[str, str]]:
    """A one-turn chat prompt."""
    return [{"role": "user", "content": text}]


REGISTRY: Registry[type[Suite]] = Registry("evaluation suite", "tunelens.evaluate.suites",
                                           order=lambda c: (c.order, c.name))


def register(cls: type[Suite]) -> type[Suite]:
    """Class decorator: make a suite selectable (the package's modules are searched for them)."""
    if not cls.name:
        raise TypeError(f"evaluation suite {cls.__name__} has no name")
    return REGISTRY.add(cls.name, cls)


def registered() -> dict[str, type[Suite]]:
    """The suites registered so far, by name, in ``order`` (see the package for all of them)."""
    return {cls.name: cls for cls in REGISTRY.entries(load=False)}
