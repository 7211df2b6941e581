"""The run config: one pydantic model with a sub-config per stage, loadable from YAML.

Unknown fields are errors, and every error names the field's path (``train.learning_rate``).
The stage sub-configs reuse the stages' own models (CurateConfig, TrainConfig) so a field
means the same thing in ``tunelens run`` as in ``tunelens data curate`` / ``tunelens train``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tunelens.config_files import load_yaml_mapping
from tunelens.errors import ConfigError

PII_TYPES = ("SECRET", "EMAIL", "IBAN", "CREDIT_CARD", "SSN", "IP", "PHONE")  # tunelens.data.pii.PII_TYPES
# The default run's training settings (measured: see docs/default-run.md).
DEFAULT_TRAIN: dict[str, Any] = {
    "max_steps": 100, "batch_size": 4, "learning_rate": 8e-4, "max_length": 384, "save_steps": 25,
    "warmup_ratio": 0.05, "lora": {"r": 16, "alpha": 32, "dropout": 0.05},
}
STAGES = ("curate", "train", "evaluate", "explain", "report")
# The pipeline sets these TrainConfig fields itself.
TRAIN_OWNED = ("model", "data", "output_dir", "resume", "method")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class SuiteSection(_Strict):
    enabled: bool = Field(True, description="Train on the built-in suite's train split.")
    n: int = Field(1400, ge=3, description="Suite size over train/test/heldout (70/15/15).")
    seed: int = Field(0, description="Suite seed (the same seed is used to evaluate on test/heldout).")


class DataSection(_Strict):
    inputs: list[str] = Field(default_factory=list, description="More record files (any format `tunelens data curate` reads).")
    license: str | None = Field(None, description="SPDX licence of the inputs (their records are 'unknown' without it).")
    commercial: bool = Field(False, description="Apply the commercial licence policy (rejects CC-BY-NC-* and unknown).")
    curate: dict[str, Any] = Field(
        default_factory=lambda: {"pii": {"types": [t for t in PII_TYPES if t != "EMAIL"]}},
        description="CurateConfig fields (see `tunelens data curate --help`). The default leaves e-mail addresses "
        "unredacted: the suite's are synthetic (reserved example.* domains) and its extraction tasks need them.")


class EvaluateSection(_Strict):
    suites: list[str] = Field(default_factory=lambda: ["builtin", "loss"], description="Evaluation suites (see `tunelens eval --help`).")
    limit: int | None = Field(300, ge=1, description="Items per suite (None = all). For the builtin suite the "
                              "test+heldout records of a suite of this size (30%) are scored.")
    max_new_tokens: int = Field(48, ge=1, description="Generation budget per answer (suite targets are <= 42 tokens).")
    batch_size: int = Field(16, ge=1, description="Generation batch size.")
    options: dict[str, Any] = Field(default_factory=dict, description="More EvalConfig fields.")


class ExplainSection(_Strict):
    enabled: bool = True
    n_items: int = Field(4, ge=1, description="Evaluation items to attribute (heatmaps and instruction focus).")
    focus_items: int = Field(8, ge=1, description="Items for the base-vs-tuned instruction-focus comparison.")
    faithfulness_items: int = Field(4, ge=0, description="Arithmetic items for the faithfulness check (0 = skip).")
    method: str = Field("input_x_gradient", description="Attribution method (see `tunelens explain --help`).")
    max_new_tokens: int = Field(48, ge=1, description="Generation budget for explained responses and rationales.")


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


class RunConfig(_Strict):
    name: str = Field("default", pattern=r"^[A-Za-z0-9._-]+$", description="Run name; the run dir is runs/<name> by default.")
    run_dir: str | None = Field(None, description="Where every stage writes (default: runs/<name>).")
    model: str = Field("smollm2-135m", description="Base model: hub id, local dir, .gguf, smollm2-135m or tiny-random.")
    seed: int = 0
    suite: SuiteSection = Field(default_factory=SuiteSection)
    data: DataSection = Field(default_factory=DataSection)
    train: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_TRAIN),
                                  description="TrainConfig fields (model/data/output_dir are set by the run).")
    launch: LaunchSection = Field(default_factory=LaunchSection)
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)
    explain: ExplainSection = Field(default_factory=ExplainSection)

    @field_validator("train")
    @classmethod
    def _train_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        owned = [k for k in value if k in TRAIN_OWNED]
        if owned:
            raise ValueError(f"{owned} are set by the run itself (use the top-level 'model', 'data' and 'run_dir')")
        return value

    def directory(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name


def curate_config(data: DataSection):
    from tunelens.data.config import CurateConfig

    values = dict(data.curate)
    if data.license and "license" not in values:
        values["license"] = data.license
    if data.commercial:
        values.setdefault("license_policy", {})
        values["license_policy"] = {**values["license_policy"], "preset": "commercial"}
    return CurateConfig.model_validate(values)


def train_config(config: RunConfig, data: list[str], output_dir: Path, resume: bool = False):
    from tunelens.train.config import TrainConfig

    return TrainConfig.model_validate({**config.train, "method": "sft", "model": config.model, "data": data,
                                       "output_dir": str(output_dir), "resume": resume})


def _format(exc: ValidationError, where: str, prefix: str = "") -> str:
    lines = []
    for err in exc.errors():
        loc = prefix + ".".join(str(p) for p in err["loc"]) or "(config)"
        msg = "unknown field (misspelled?)" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {loc}: {msg}")
    return f"invalid run config ({where}):\n" + "\n".join(lines)


def build_run_config(values: dict[str, Any], where: str = "options") -> RunConfig:
    try:
        config = RunConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_format(exc, where)) from None
    # The stage sub-configs are the stages' own models: check them now, not hours in.
    for prefix, check in (("data.curate.", lambda: curate_config(config.data)),
                          ("train.", lambda: train_config(config, ["x.jsonl"], Path("x")))):
        try:
            check()
        except ValidationError as exc:
            raise ConfigError(_format(exc, where, prefix)) from None
    return config


def load_run_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """The YAML config at ``path`` (or the embedded default) with dotted-key overrides on top."""
    # Without a file, overrides apply on top of the embedded default (so `--set train.max_steps=5`
    # keeps the default's other training settings instead of replacing the whole section).
    values: dict[str, Any] = RunConfig().model_dump(mode="json") if path is None else {}
    where = "the embedded default"
    if path is not None:
        values = load_yaml_mapping(path, "run config")
        where = str(path)
    for key, value in (overrides or {}).items():
        node = values
        *heads, last = key.split(".")
        for head in heads:
            node = node.setdefault(head, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{where}: field {head!r} must be a mapping to set {key}")
        node[last] = value
    return build_run_config(values, where)
