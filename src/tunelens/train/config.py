"""The training config, loadable from YAML, overridable from the CLI.

``TrainSettings`` holds how to train (the ``train:`` section of a run config); ``TrainConfig``
adds what to train and where. ``load_config`` is the shared loader (tunelens.config_files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator
from pydantic_core import PydanticCustomError

from tunelens import config_files
from tunelens.train.grpo_config import GrpoSettings


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA alpha (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: str | list[str] = Field(
        "all-linear", description="'all-linear' (every linear layer but the LM head) or a list of module names."
    )


class TrainSettings(BaseModel):
    """How to train: every TrainConfig field but what to train and where (method, model, data,
    output_dir, resume). It is the ``train:`` section of a run config, which sets those itself.
    Unknown fields are errors (a typo must not be ignored)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    peft: Literal["lora", "qlora", "none"] = "lora"
    lora: LoraSettings = Field(default_factory=LoraSettings)
    max_length: int = Field(1024, ge=8, description="Longest tokenised example.")
    length_policy: Literal["truncate", "drop"] = "truncate"
    group_by_length: bool = Field(True, description="Batch examples of similar length (less padding).")
    epochs: float = Field(1.0, gt=0, allow_inf_nan=False, description="Passes over the data (used when max_steps is -1).")
    max_steps: int = Field(
        -1, description="Optimizer steps (>= 1); overrides epochs. -1 (the default; null means the same) "
        "trains for `epochs` instead.",
    )
    learning_rate: float = Field(2e-4, gt=0, allow_inf_nan=False)
    lr_scheduler: str = Field("linear", description="transformers scheduler name (linear, cosine, constant...).")
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False)
    batch_size: int = Field(8, ge=1, description="Per-device micro-batch size.")
    grad_accum: int = Field(1, ge=1, description="Gradient accumulation steps.")
    save_steps: int = Field(50, ge=1, description="Checkpoint every N optimizer steps (and at the end).")
    save_total_limit: int | None = Field(3, ge=1, description="Keep at most this many checkpoints.")
    logging_steps: int = Field(1, ge=1)
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Random seed (numpy accepts 0 to 2**32 - 1).")
    merge: bool = Field(False, description="Also write OUT/merged: the adapter merged into the base weights.")
    beta: float = Field(0.1, gt=0, allow_inf_nan=False, description="DPO temperature.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory; off by default (slow on CPU).")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on CUDA with bf16, fp16 on other CUDA, fp32 on CPU."
    )
    torch_compile: bool = Field(
        False, description="torch.compile the model. Measured on a 2-core CPU with SmolLM2-135M: 1.18x per step after "
        "about 5 minutes of compilation, so it pays off only for runs of many hundreds of steps.",
    )
    supervised_head: bool = Field(
        True, description="SFT: apply the LM head and cross-entropy only at supervised positions (faster)."
    )
    memory_check: bool = Field(True, description="Refuse to start when the memory estimate clearly exceeds what is free.")
    grpo: GrpoSettings = Field(default_factory=GrpoSettings, description="GRPO (method: grpo): rollouts and rewards.")
    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=list, description="Experiment trackers the trainer logs to (transformers' report_to): "
        "tensorboard, mlflow, wandb. Empty (or 'none'): metrics.jsonl only.",
    )

    @field_validator("max_steps", mode="before")
    @classmethod
    def _epoch_mode(cls, value: Any) -> Any:
        # null means "no step limit": train for `epochs` (transformers' max_steps=-1).
        return -1 if value is None else value

    @field_validator("max_steps")
    @classmethod
    def _positive_steps(cls, value: int) -> int:
        # transformers treats any max_steps <= 0 as "train for epochs": 0 would run one step and
        # -3 a whole epoch. Only -1 means epoch mode here; other values must count steps.
        if value == 0 or value < -1:
            raise PydanticCustomError(
                "max_steps", "must be at least 1 optimizer step, or -1 (or null) to train for `epochs` instead; "
                "got {value}", {"value": value},
            )
        return value

    @field_validator("report_to", mode="before")
    @classmethod
    def _trackers(cls, value: Any) -> Any:
        # One name, a comma-separated string, or a list; 'none' (transformers' word for no tracker) means [].
        if value is None:
            return []
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, (list, tuple)):
            names = [v.strip().lower() if isinstance(v, str) else v for v in value]
            names = [v for v in names if v not in ("", "none")]
            return list(dict.fromkeys(names))
        return value

    @model_validator(mode="after")
    def _check(self) -> TrainSettings:
        if self.merge and self.peft == "none":
            raise ValueError("merge applies to adapters (peft: lora/qlora); full fine-tuning already writes OUT/model")
        return self


# The TrainConfig fields that are not settings: what to train, on what, and where.
RUN_FIELDS = ("method", "model", "data", "output_dir", "resume")


class TrainConfig(TrainSettings):
    """Everything a training run needs: the settings plus what to train and where."""

    method: Literal["sft", "dpo", "grpo"] = "sft"
    model: str = Field("smollm2-135m", description="Hub id, local HF dir, .gguf file, smollm2-135m or tiny-random.")
    data: list[str] = Field(default_factory=list, description="Records JSONL files (conversation for SFT, preference for DPO, prompts for GRPO).")
    output_dir: str = Field("runs/train", description="Where the run writes its outputs.")
    resume: bool = Field(False, description="Continue from the last checkpoint in OUT/checkpoints.")

    @field_validator("data", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_serializer(mode="wrap")
    def _run_fields_first(self, handler):
        # Dumps (OUT/config.yaml) keep the field order they had before the settings became a base
        # class: method, model, data, output_dir, the settings, resume. Keys and values are unchanged.
        values = handler(self)
        head = {k: values.pop(k) for k in RUN_FIELDS[:4] if k in values}
        tail = {"resume": values.pop("resume")} if "resume" in values else {}
        return {**head, **values, **tail}

    @classmethod
    def from_settings(cls, settings: TrainSettings, **run_fields: Any) -> TrainConfig:
        """The TrainConfig of already-validated ``settings`` plus the ``RUN_FIELDS`` given here."""
        unknown = set(run_fields) - set(RUN_FIELDS)
        if unknown:
            raise TypeError(f"not run fields: {sorted(unknown)}")
        return config_files.validate(cls, {**settings.model_dump(), **run_fields}, "training config", "the run")

    @property
    def out(self) -> Path:
        return Path(self.output_dir)


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A YAML config (optional) with CLI overrides on top (nested keys as 'lora.r'; None: not given)."""
    return config_files.load_config(TrainConfig, path, overrides, what="training config")
