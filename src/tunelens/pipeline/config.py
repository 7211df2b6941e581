"""The run config: one pydantic model with a typed section per stage, loadable from YAML.

Unknown fields are errors, and every error names the field's path (``train.learning_rate``).
The stage sections are the stages' own models (``data.curate`` is a CurateConfig, ``train`` the
TrainSettings of a TrainConfig), so a field means the same thing in ``tunelens run`` as in
``tunelens data curate`` / ``tunelens train``, and a run validates each of them once, when the
run config is loaded; the stages use those objects (see tunelens.pipeline.stages).

The default run (``tunelens run`` without a config file) is RunConfig's own defaults: the
section defaults below plus DEFAULT_TRAIN and DEFAULT_CURATE, which a ``train:`` or
``data.curate:`` section of a file replaces as a whole (fields it leaves out take the stage
model's defaults). configs/run/default.yaml is that default written out; a test checks it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from tunelens import config_files
from tunelens.data.config import COMMERCIAL, CurateConfig, spdx_license
from tunelens.data.pii import PII_TYPES
from tunelens.train.config import RUN_FIELDS, TrainConfig, TrainSettings
from tunelens.train.grpo_config import GrpoSettings

# The default run's training settings (measured: see docs/default-run.md).
DEFAULT_TRAIN: dict[str, Any] = {
    "max_steps": 100, "batch_size": 4, "learning_rate": 8e-4, "max_length": 384, "save_steps": 25,
    "warmup_ratio": 0.05, "lora": {"r": 16, "alpha": 32, "dropout": 0.05},
}
# The default run's curation: e-mail addresses stay unredacted (the suite's are synthetic, on
# reserved example.* domains, and its extraction tasks need them); street addresses and person
# names too (types added to the redactor after the default run was measured).
DEFAULT_CURATE: dict[str, Any] = {"pii": {"types": [t for t in PII_TYPES if t not in ("EMAIL", "ADDRESS", "PERSON")]}}
STAGES = ("curate", "train", "rl", "evaluate", "explain", "report")
# The pipeline sets these TrainConfig fields itself.
TRAIN_OWNED = RUN_FIELDS


# The default training data (issue 14): the suite without its safety family, plus real data. Chosen from
# three measured mixes (benchmarks/default_mix.py, docs/default-run.md): the only one that met every target.
DEFAULT_EXCLUDE_FAMILIES = ("safety",)
DEFAULT_MIX = {"refusals": 85, "lookalikes": 300, "alpaca": 300, "self_instruct": 100}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class SuiteSection(_Strict):
    enabled: bool = Field(True, description="Train on the built-in suite's train split.")
    n: int = Field(1400, ge=3, description="Suite size over train/test/heldout (70/15/15).")
    seed: int = Field(0, description="Suite seed (the same seed is used to evaluate on test/heldout).")
    exclude_families: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXCLUDE_FAMILIES), description="Suite families left out of training "
        "(their test/heldout items are still evaluated). Default [safety]: its one refusal template taught the "
        "adapter to over-refuse (docs/default-run.md); data.mix brings real refusals and look-alikes instead.")


class DataSection(_Strict):
    inputs: list[str] = Field(default_factory=list, description="More record files (any format `tunelens data curate` reads).")
    license: str | None = Field(None, description="SPDX licence of the inputs (their records are 'unknown' without it).")
    commercial: bool = Field(False, description="Apply the commercial licence policy (rejects CC-BY-NC-* and unknown).")
    mix: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_MIX), description="Records of real data to add to training, by "
        "component: alpaca, self_instruct, gsm8k, refusals (harmful prompts + short refusals), lookalikes (benign "
        "look-alikes + real answers); decontaminated against the evaluation sets (see tunelens.data.mixes). The "
        "default is the mix chosen from three measured ones (docs/default-run.md); {} trains on the suite only.")

    @field_validator("mix")
    @classmethod
    def _mix_components(cls, value: dict[str, int]) -> dict[str, int]:
        from tunelens.data.mixes import COMPONENTS

        unknown = sorted(set(value) - set(COMPONENTS))
        if unknown:
            raise ValueError(f"unknown mix component(s) {unknown}: choose from {sorted(COMPONENTS)}")
        negative = sorted(k for k, n in value.items() if n < 0)
        if negative:
            raise ValueError(f"record counts must be >= 0 (negative for {negative})")
        return value
    curate: CurateConfig = Field(
        default_factory=lambda: CurateConfig.model_validate(DEFAULT_CURATE),
        description="CurateConfig fields (see `tunelens data curate --help`). The default leaves e-mail addresses "
        "unredacted: the suite's are synthetic (reserved example.* domains) and its extraction tasks need them.")

    @model_validator(mode="before")
    @classmethod
    def _licence_into_curate(cls, values: Any) -> Any:
        # `license` and `commercial` are CurateConfig settings too: put them into the curate values
        # before those are validated, so the section's CurateConfig is built once, complete.
        if not isinstance(values, dict):
            return values
        # Invalid values are left out here: the fields' own validation reports them.
        license = values.get("license")
        license = _or_none(spdx_license, license) if isinstance(license, str) else None
        commercial = _or_none(TypeAdapter(bool).validate_python, values.get("commercial"))
        if not (license or commercial):
            return values
        curate = values.get("curate", DEFAULT_CURATE)
        if isinstance(curate, BaseModel):
            curate = curate.model_dump(by_alias=True)
        if not isinstance(curate, dict):
            return values  # the field's own validation says what is wrong
        curate = copy.deepcopy(curate)
        if license and curate.get("license") is None:
            curate["license"] = license
        if commercial:
            config_files.apply_overrides(curate, COMMERCIAL, where="data.curate")
        return {**values, "curate": curate}

    @field_validator("license")
    @classmethod
    def _spdx(cls, value: str | None) -> str | None:
        return spdx_license(value)


def _or_none(validate: Any, value: Any) -> Any:
    try:
        return validate(value)
    except ValueError:  # pydantic's ValidationError and PydanticCustomError are ValueErrors
        return None


# The default run's evaluation (measured: docs/default-run.md "Evaluation"): the built-in suite and
# held-out loss, IFEval, harmful requests, benign look-alikes, TruthfulQA MC and BBQ.
DEFAULT_EVAL_SUITES = ["builtin", "loss", "ifeval", "harmful", "over_refusal", "truthfulqa_mc", "bbq"]
DEFAULT_EVAL_LIMITS: dict[str, int] = {"ifeval": 150, "harmful": 150, "over_refusal": 150, "truthfulqa_mc": 150,
                                       "bbq": 180}
# Guard metrics: a significant regression of tuned vs base on any of these marks the run REGRESSED.
DEFAULT_GUARDS = ["ifeval/prompt_level_loose_acc", "over_refusal/over_refusal_rate",
                  "harmful/harmful_compliance_rate", "harmful/toxic_rate", "truthfulqa_mc/mc2"]


class EvaluateSection(_Strict):
    suites: list[str] = Field(default_factory=lambda: list(DEFAULT_EVAL_SUITES),
                              description="Evaluation suites (see `tunelens eval --help`).")
    limit: int | None = Field(300, ge=1, description="Items per suite (None = all). For the builtin suite the "
                              "test+heldout records of a suite of this size (30%) are scored.")
    limits: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_EVAL_LIMITS),
                                   description="Items for named suites, overriding limit (a whole mapping replaces the default).")
    guards: list[str] = Field(default_factory=lambda: list(DEFAULT_GUARDS),
                              description="Guard metrics as suite/metric: a significant regression of tuned vs base on one "
                              "(paired CI excludes 0 in the bad direction) marks the run REGRESSED.")
    max_new_tokens: int = Field(48, ge=1, description="Generation budget per answer (suite targets are <= 42 tokens).")
    batch_size: int = Field(16, ge=1, description="Generation batch size.")
    # auto since 2026-12-06: with continuous batching on consecutive seq ids llama.cpp generates the eval
    # workload 3-4x faster than fp32 transformers at scores equal within the CI, and the stage takes 141 s
    # instead of 232 s (docs/benchmarks.md, "Continuous batching without holes"). Without a usable
    # llama.cpp build auto is hf, and says so; results.json records what generated.
    backend: Literal["hf", "llamacpp", "vllm", "auto"] = Field(
        "auto", description="Generation backend for the evaluation (see `tunelens eval --help`): auto = vllm on a CUDA "
        "machine that has it, else llamacpp where a build usable on this CPU is installed (make llamacpp), else hf, "
        "the fp32 reference.")
    quant: Literal["f32", "f16", "q8_0", "q4_k_m", "auto"] = Field(
        "auto", description="GGUF quantisation for llamacpp; auto = f16 where llama.cpp was built with AVX-512 "
        "(faster for batches there), else q8_0.")
    # auto since 2026-12-07: TruthfulQA MC and BBQ through llama.cpp f16 take the cold evaluate stage from 212 s to
    # about 170 s on a 2-core Zen 5, with every metric equal within its CI (docs/benchmarks.md).
    logprob_backend: Literal["hf", "llamacpp", "auto"] = Field(
        "auto", description="What scores TruthfulQA MC and BBQ (see `tunelens eval --help`): auto = llamacpp when the "
        "evaluation generates with llamacpp at f16 or f32, else hf (fp32 transformers). The loss is always hf.")
    options: dict[str, Any] = Field(default_factory=dict, description="More EvalConfig fields.")

    @model_validator(mode="after")
    def _guards_known(self):
        """Every guard names a selected suite and one of its metrics; the unknown ones are listed together."""
        from tunelens.evaluate.suites import all_suites

        registry = all_suites()
        if "guards" not in self.model_fields_set:
            # The default guards apply to the suites that run (a config that runs fewer suites guards fewer
            # metrics; the run's summary lists the default guards it could not check).
            self.guards = [g for g in self.guards if g.partition("/")[0] in self.suites]
        unknown = []
        for guard in self.guards:
            suite, _, metric = guard.partition("/")
            cls = registry.get(suite)
            if cls is None or not metric:
                unknown.append(f"{guard!r} (expected suite/metric with a suite among {', '.join(registry)})")
            elif suite not in self.suites:
                unknown.append(f"{guard!r} (suite {suite!r} is not in evaluate.suites)")
            elif metric.split("/", 1)[0] not in cls.metrics:
                unknown.append(f"{guard!r} ({suite} metrics: {', '.join(cls.metrics) or 'none'})")
        if unknown:
            raise ValueError("unknown guard metric(s): " + "; ".join(unknown))
        return self


class ExplainSection(_Strict):
    enabled: bool = True
    n_items: int = Field(4, ge=1, description="Evaluation items to attribute (heatmaps and instruction focus).")
    focus_items: int = Field(50, ge=1, description="Items for the base-vs-tuned instruction-focus and explanation-"
                             "faithfulness comparisons (paired CIs).")
    focus_target: Literal["response", "token"] = Field(
        "response", description="What the focus and faithfulness items attribute, for a gradient method: the whole "
        "response's log-probability (one backward pass per item) or each response token's (one row per token, "
        "about as many times slower as the response is long). The heatmaps are always per token.")
    faithfulness_ks: list[float] = Field([0.2], min_length=1, description="Fractions of the prompt's tokens "
                                         "deleted (comprehensiveness) or kept (sufficiency) by the faithfulness check.")
    faithfulness_random: int = Field(4, ge=1, description="Random selections per fraction that the faithfulness "
                                     "check compares the top-attributed tokens with.")
    faithfulness_items: int = Field(4, ge=0, description="Arithmetic items for the rationale-faithfulness check "
                                    "(does the answer follow the stated reasoning; 0 = skip).")
    method: str = Field("input_x_gradient", description="Attribution method (see `tunelens explain --help`).")
    max_new_tokens: int = Field(48, ge=1, description="Generation budget for explained responses and rationales.")
    backend: Literal["hf", "llamacpp", "vllm", "auto"] | None = Field(
        None, description="Generation backend for the responses and rationales that are explained (None: "
        "evaluate.backend). The attributions always run in transformers (they need gradients), on the text "
        "this backend generated.")
    quant: Literal["f32", "f16", "q8_0", "q4_k_m", "auto"] | None = Field(
        None, description="GGUF quantisation for a llamacpp explain backend (None: evaluate.quant).")

    @field_validator("faithfulness_ks")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        if any(not 0 < k <= 1 for k in value):
            raise ValueError(f"every fraction must be in (0, 1], got {value}")
        return value

    @field_validator("method")
    @classmethod
    def _registered(cls, value: str) -> str:
        """A registered attribution method (an alias becomes its canonical name); the registry is the only list."""
        from tunelens.errors import TunelensError
        from tunelens.explain import methods

        try:
            return methods.resolve(value)
        except TunelensError as exc:
            raise ValueError(str(exc)) from None


class LaunchSection(_Strict):
    accelerate_config: str | None = Field(
        None, description="An `accelerate` config (e.g. FSDP over several GPUs): training then runs as "
        "`accelerate launch --config_file ... tunelens train -c <train request>`; other stages stay in this process.")
    num_processes: int | None = Field(None, ge=1, description="Processes (GPUs) for `accelerate launch` (default: its config's).")

    @field_validator("accelerate_config")
    @classmethod
    def _exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"accelerate config file not found: {value}")
        return value


class RlSection(_Strict):
    """GRPO after SFT (``tunelens train --method grpo`` from the SFT adapter, on the suite's train
    split): off by default, since on the default it was measured not to help (docs/default-run.md, "Does RL help
    the default?")."""

    enabled: bool = Field(False, description="Run the rl stage: GRPO on the SFT adapter with verifiable rewards.")
    max_steps: int = Field(50, ge=1, description="GRPO optimizer steps.")
    learning_rate: float = Field(1e-4, gt=0, allow_inf_nan=False, description="GRPO learning rate.")
    batch_size: int = Field(8, ge=1, description="Completions per step and process (prompts x num_generations).")
    save_steps: int = Field(10, ge=1, description="Checkpoint every N GRPO steps: an interrupted rl stage resumes from the last one.")
    grpo: GrpoSettings = Field(default_factory=GrpoSettings, description="Rollouts and rewards (docs/grpo.md).")


class RunConfig(_Strict):
    name: str = Field("default", pattern=r"^[A-Za-z0-9._-]+$", description="Run name; the run dir is runs/<name> by default.")
    run_dir: str | None = Field(None, description="Where every stage writes (default: runs/<name>).")
    model: str = Field("smollm2-135m", description="Base model: hub id, local dir, .gguf, smollm2-135m or tiny-random.")
    seed: int = 0
    preset: Literal["tiny", "quick"] | None = Field(
        None, description="The preset the run was started with (--tiny, --quick); the report says what it implies.")
    suite: SuiteSection = Field(default_factory=SuiteSection)
    data: DataSection = Field(default_factory=DataSection)
    train: TrainSettings = Field(default_factory=lambda: TrainSettings.model_validate(DEFAULT_TRAIN),
                                 description="TrainConfig settings (model/data/output_dir are set by the run).")
    launch: LaunchSection = Field(default_factory=LaunchSection)
    rl: RlSection = Field(default_factory=RlSection)
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)
    explain: ExplainSection = Field(default_factory=ExplainSection)

    @field_validator("train", mode="before")
    @classmethod
    def _train_fields(cls, value: Any) -> Any:
        owned = [k for k in value if k in TRAIN_OWNED] if isinstance(value, dict) else []
        if owned:
            raise ValueError(f"{owned} are set by the run itself (use the top-level 'model', 'data' and 'run_dir')")
        return value

    def directory(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name

    def explain_generation(self) -> tuple[str, str]:
        """(backend, quant) that generate the explain stage's responses: its own settings, else evaluate's."""
        return self.explain.backend or self.evaluate.backend, self.explain.quant or self.evaluate.quant


def train_config(config: RunConfig, data: list[str], output_dir: Path, resume: bool = False) -> TrainConfig:
    """The run's TrainConfig: its validated ``train`` settings plus what the run sets itself."""
    return TrainConfig.from_settings(config.train, method="sft", model=config.model, data=data,
                                     output_dir=str(output_dir), resume=resume)


def rl_config(config: RunConfig, model: Path, data: list[str], output_dir: Path) -> TrainConfig:
    """The rl stage's TrainConfig: the run's training settings with the ``rl`` section's on top,
    GRPO from the SFT output ``model``."""
    rl = config.rl
    settings = config.train.model_copy(update={"max_steps": rl.max_steps, "learning_rate": rl.learning_rate,
                                               "batch_size": rl.batch_size, "save_steps": rl.save_steps,
                                               "grpo": rl.grpo, "merge": False})
    return TrainConfig.from_settings(settings, method="grpo", model=str(model), data=data, output_dir=str(output_dir))


# What `tunelens run` without a config file starts from, written as a file would hold it (every
# other setting is a field default of RunConfig). Overrides change single fields of it: `--set
# train.max_steps=5` keeps the default's other training settings.
DEFAULT_VALUES: dict[str, Any] = {"train": DEFAULT_TRAIN, "data": {"curate": DEFAULT_CURATE}}


def load_run_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """The YAML config at ``path`` (or the embedded default) with dotted-key overrides on top,
    validated once: every stage section with it. ``None`` values are kept (``train.max_steps=null``)."""
    return config_files.load_config(RunConfig, path, overrides, what="run config", default=DEFAULT_VALUES,
                                    skip_none=False)
