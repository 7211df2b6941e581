"""The evaluation config: validated up front, misspelled fields rejected."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tunelens.evaluate.suites import all_suites

_SUITES = all_suites()
SUITES = tuple(_SUITES)  # every suite, in order: 'all' runs those this install can run
DEFAULT_SUITES = tuple(name for name, suite in _SUITES.items() if suite.default)


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spec: str = Field(description="Hub id, local HF dir, PEFT adapter dir, .gguf, smollm2-135m or tiny-random.")
    label: str | None = Field(default=None, description="Name used in results (default: derived from spec).")


class GenerationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_new_tokens: int = Field(default=256, ge=1, le=8192)
    temperature: float = Field(default=0.0, ge=0.0, description="0 = greedy.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    batch_size: int = Field(default=8, ge=1, le=512)
    stop: list[str] = Field(default_factory=list)
    backend: Literal["hf", "llamacpp", "vllm", "auto"] = Field(
        default="hf", description="Generation backend (tunelens.generate.backends): hf = transformers fp32, the "
        "reference; llamacpp = llama.cpp on the model's GGUF export; vllm = CUDA; auto = the fastest available.")
    quant: Literal["f32", "f16", "q8_0", "q4_k_m", "auto"] = Field(
        default="auto", description="GGUF quantisation for the llamacpp backend; auto = f16 where llama.cpp was "
        "built with AVX-512 (faster for batches there), else q8_0.")
    logprob_backend: Literal["hf", "llamacpp", "auto"] = Field(
        default="auto", description="What scores the multiple-choice suites' continuations (TruthfulQA MC, BBQ): hf "
        "= transformers fp32, the reference; llamacpp = llama.cpp on the generation backend's GGUF (or a GGUF "
        "exported for it); auto = llamacpp when the generation backend is llamacpp with f16 or f32 weights, else hf. "
        "The held-out loss always runs in transformers on the weights it describes.")


FEWSHOT_SUITES = tuple(name for name, suite in _SUITES.items() if suite.few_shot)  # can add a k-shot variant of every item


class FewShotConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = Field(default=5, ge=1, le=16, description="Exemplars per k-shot prompt (the zero-shot variant always runs too).")
    seed: int = Field(default=1234, description="Seed choosing the exemplars (GSM8K: from gsm8k_train.jsonl; "
                      "builtin: per item, from the suite's train split of the item's family).")
    suites: list[str] = Field(
        default_factory=lambda: ["gsm8k"],
        description=f"Suites that also get a k-shot variant ({', '.join(FEWSHOT_SUITES)}; [] or 'none' for none). "
        "Default: gsm8k only, when it runs; builtin's k-shot variant costs a second generation per trained-family item.")

    @field_validator("suites", mode="before")
    @classmethod
    def _expand(cls, value):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list of suite names, got {type(value).__name__}")
        out: list[str] = []
        for item in value:
            for name in str(item).split(","):
                name = name.strip().lower()
                if not name or name == "none":
                    continue
                if name not in FEWSHOT_SUITES:
                    raise ValueError(f"suite {name!r} has no k-shot variant; choose from {', '.join(FEWSHOT_SUITES)} (or none)")
                out.append(name)
        return list(dict.fromkeys(out))


JUDGE_TASKS = ("refusal", "harm")


class JudgeConfig(BaseModel):
    """An LLM judge behind an OpenAI-compatible endpoint for the refusal and/or harm rates.

    Its error is not known in advance (it depends on the model behind the URL): validate it first with
    ``tunelens safety validate --task T --judge URL -o card.json`` and give that file in ``cards``; then
    each judged rate is shown raw and corrected with the judge's measured error, as the offline
    instruments' rates are. Without a card the rates are shown raw, with "instrument error unknown".
    """

    model_config = ConfigDict(extra="forbid")
    url: str = Field(description="Base URL of the endpoint (vLLM, llama.cpp server, Ollama, tunelens serve, a hosted API).")
    model: str | None = Field(default=None, description="Model name at the endpoint (default: the first it lists).")
    tasks: list[Literal["refusal", "harm"]] = Field(default_factory=lambda: list(JUDGE_TASKS), min_length=1,
                                                    description="Which rates the judge scores; the others keep their instrument.")
    cards: dict[str, Path] = Field(default_factory=dict, description="task -> the judge's card from `tunelens safety "
                                   "validate --judge` (its operating point corrects the judged rates).")
    timeout: float = Field(default=60.0, gt=0, description="Seconds per judge request.")
    concurrency: int = Field(default=4, ge=1, description="Judge requests in flight at once.")
    retries: int = Field(default=2, ge=0, description="Retries of a failed judge request.")
    max_tokens: int = Field(default=16, ge=1, description="Longest judge answer (raise it for reasoning models).")

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value or ""):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @model_validator(mode="after")
    def _cards(self):
        for task, path in self.cards.items():
            if task not in JUDGE_TASKS:
                raise ValueError(f"cards: {task!r} is not a judged task ({', '.join(JUDGE_TASKS)})")
            if task not in self.tasks:
                raise ValueError(f"cards.{task}: the judge does not score {task} (tasks: {', '.join(self.tasks)})")
            if not path.is_file():
                raise ValueError(f"cards.{task}: {path} is not a file")
            try:
                card = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ValueError(f"cards.{task}: {path} is not a JSON card ({exc})") from None
            if not isinstance(card, dict) or card.get("task") != task:
                found = card.get("task") if isinstance(card, dict) else None
                raise ValueError(f"cards.{task}: {path} is the card of task {found!r}, not {task!r}")
            if not str(card.get("name", "")).startswith("judge:"):
                raise ValueError(f"cards.{task}: {path} is the card of {card.get('name')!r}, not of an LLM judge "
                                 f"(make one with `tunelens safety validate --task {task} --judge URL -o card.json`)")
            op = card.get("operating_point")
            if not isinstance(op, dict) or not all(isinstance(op.get(k), (int, float)) for k in ("sensitivity", "specificity")):
                raise ValueError(f"cards.{task}: {path} has no operating_point with sensitivity and specificity")
        return self


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: list[ModelEntry] = Field(min_length=1)
    suites: list[str] = Field(default_factory=lambda: list(DEFAULT_SUITES))
    limit: int | None = Field(default=None, ge=1, description="Items per suite (None = all). For builtin: the suite "
                              "size passed to tunelens.suite.eval_items, whose test+heldout part is scored.")
    limits: dict[str, int] = Field(default_factory=dict, description="Items for named suites, overriding limit "
                                   "(e.g. {ifeval: 160, truthfulqa_mc: 200}).")
    seed: int = 0
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    few_shot: FewShotConfig = Field(default_factory=FewShotConfig)
    output_dir: Path
    cache_dir: Path | None = Field(default=None, description="Generation cache (default: TUNELENS_CACHE/eval-generations).")
    data_dir: Path | None = Field(default=None, description="Data folder (default: TUNELENS_DATA_DIR or ../shared/data).")
    reference_data: Path | None = Field(
        default=None, description="Curated JSONL (conversation records) for ROUGE-L and held-out loss; "
        "default: a fixed 5% held-out slice of alpaca_data.json.")
    bootstrap_resamples: int = Field(default=2000, ge=100, le=100000)
    use_cache: bool = True
    comparisons: list[tuple[str, str]] | None = Field(
        default=None, description="Model pairs [a, b] compared item by item (b - a, paired CI), by label; "
        "default: the first model against each other one.")
    max_loss_tokens: int = Field(default=1024, ge=16, description="Longest example (tokens) for the loss suite.")
    instruments: dict[str, str] = Field(
        default_factory=dict, description="Another registered safety instrument for a task's rates, e.g. "
        "{refusal: refusal-lm, harm: harm-lm} (slower, more accurate; docs/safety.md); default: each task's own.")
    judge: JudgeConfig | None = Field(
        default=None, description="An LLM judge (OpenAI-compatible endpoint) for the refusal and/or harm rates, "
        "corrected with its validated card when one is given.")

    @field_validator("models", mode="before")
    @classmethod
    def _specs_as_entries(cls, value):
        if isinstance(value, (list, tuple)):
            return [{"spec": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("suites", mode="before")
    @classmethod
    def _expand_suites(cls, value):
        if isinstance(value, str):
            value = [value]
        out: list[str] = []
        for item in value:
            for name in str(item).split(","):
                name = name.strip().lower()
                if not name:
                    continue
                if name == "all":
                    out.extend(n for n, suite in _SUITES.items() if suite.available())
                elif name not in SUITES:
                    raise ValueError(f"unknown suite {name!r}; choose from {', '.join(SUITES)} or 'all'")
                else:
                    out.append(name)
        if not out:
            raise ValueError("no suite selected")
        return list(dict.fromkeys(out))

    @field_validator("instruments")
    @classmethod
    def _known_instruments(cls, value: dict[str, str]) -> dict[str, str]:
        from tunelens.safety.instruments import REGISTRY, TASKS

        for task, name in value.items():
            if task not in TASKS:
                raise ValueError(f"unknown safety task {task!r}; the tasks are {', '.join(TASKS)}")
            names = sorted(n for n in REGISTRY.names() if n != "judge" and REGISTRY.get(n).task == task)
            if name not in names:
                raise ValueError(f"{task}: no instrument named {name!r}; the {task} instruments are {', '.join(names)}")
        return value

    @model_validator(mode="after")
    def _judge_or_instrument(self):
        both = sorted(set(self.judge.tasks if self.judge else ()) & set(self.instruments))
        if both:
            raise ValueError(f"instruments and judge both choose the {', '.join(both)} instrument; keep one")
        return self

    @field_validator("limits")
    @classmethod
    def _known_limits(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = [name for name in value if name not in SUITES]
        if unknown:
            raise ValueError(f"unknown suite(s) {', '.join(map(repr, unknown))}; choose from {', '.join(SUITES)}")
        bad = [name for name, n in value.items() if n < 1]
        if bad:
            raise ValueError(f"limits for {', '.join(bad)} must be at least 1")
        return value

    @model_validator(mode="after")
    def _few_shot_suites_selected(self):
        # The default (gsm8k) applies only when gsm8k runs; a suite asked for by name must run.
        if "suites" in self.few_shot.model_fields_set:
            missing = [name for name in self.few_shot.suites if name not in self.suites]
            if missing:
                raise ValueError(f"few_shot.suites: {', '.join(map(repr, missing))} not among the selected suites "
                                 f"({', '.join(self.suites)}); add it to suites or drop it from few_shot.suites")
        return self

    def few_shot_for(self, suite: str) -> bool:
        """Whether ``suite`` runs with a k-shot variant in this evaluation."""
        return suite in self.suites and suite in self.few_shot.suites

    @model_validator(mode="after")
    def _labels(self):
        seen: set[str] = set()
        for i, entry in enumerate(self.models):
            label = entry.label or _label_from_spec(entry.spec)
            if entry.label and entry.label in seen:
                raise ValueError(f"models[{i}].label {entry.label!r} is used twice")
            base, n = label, 2
            while label in seen:
                label, n = f"{base}-{n}", n + 1
            entry.label = label
            seen.add(label)
        return self

    @model_validator(mode="after")
    def _pairs_known(self):
        if self.comparisons is None:
            return self
        labels = self.labels()
        for i, (a, b) in enumerate(self.comparisons):
            unknown = [x for x in (a, b) if x not in labels]
            if unknown:
                raise ValueError(f"comparisons[{i}]: unknown model label(s) {unknown}; the models are {labels}")
            if a == b:
                raise ValueError(f"comparisons[{i}]: compares {a!r} with itself")
        return self

    def labels(self) -> list[str]:
        return [m.label for m in self.models]  # type: ignore[misc]

    def pairs(self) -> list[tuple[str, str]]:
        """The (a, b) label pairs compared: ``comparisons``, else the first model against each other one."""
        if self.comparisons is not None:
            return list(dict.fromkeys(tuple(p) for p in self.comparisons))
        labels = self.labels()
        return [(labels[0], b) for b in labels[1:]]


def builtin_available() -> bool:
    """Whether the project's verifiable suite (tunelens.suite) exposes its eval API."""
    return _SUITES["builtin"].available()


def _label_from_spec(spec: str) -> str:
    name = Path(spec.rstrip("/")).name or spec
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", name).strip("-") or "model"
