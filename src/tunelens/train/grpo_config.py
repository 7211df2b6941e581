"""The ``grpo:`` section of a training config: rollouts, the KL term, generation and the rewards.

``TrainSettings.grpo`` holds it; it is read only when ``method: grpo``. Each reward entry names a
plug-in of ``tunelens.train.rewards`` (the registry is the only list; an unknown name lists the
choices) with its weight and its own options, validated by that plug-in's options model.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator


class RewardSpec(BaseModel):
    """One reward of the composition: ``total = sum(weight * reward)`` per completion."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="A reward plug-in: suite, ifeval, refusal, harm, length, format or python.")
    weight: float = Field(1.0, allow_inf_nan=False, description="Its weight in the total (may be negative).")
    label: str | None = Field(None, description="The name it is logged under (default: name); needed to use a reward twice.")
    options: dict[str, Any] = Field(default_factory=dict, description="The plug-in's own options (see docs/grpo.md).")

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        from tunelens.train.rewards import REGISTRY

        if value not in REGISTRY:
            raise ValueError(f"unknown reward {value!r}: choose one of {', '.join(REGISTRY.names())}")
        return REGISTRY.resolve(value)

    @field_validator("options")
    @classmethod
    def _valid_options(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        from pydantic import ValidationError

        from tunelens.train.rewards import REGISTRY

        name = info.data.get("name")
        if name is None:  # the name itself was invalid; that error is reported
            return value
        try:
            parsed = REGISTRY.get(name).Options.model_validate(value)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(options)'}: "
                                 f"{'unknown option' if e['type'] == 'extra_forbidden' else e['msg']}"
                                 for e in exc.errors())
            raise ValueError(f"reward {name!r}: {problems}") from None
        return parsed.model_dump()

    @property
    def key(self) -> str:
        return self.label or self.name


def _default_rewards() -> list[RewardSpec]:
    return [RewardSpec(name="suite")]


class GrpoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rewards: list[RewardSpec] = Field(default_factory=_default_rewards, min_length=1,
                                      description="The rewards and their weights.")
    num_generations: int = Field(4, ge=2, description="Completions sampled per prompt (the group).")
    max_completion_length: int = Field(64, ge=1, description="Longest completion in tokens.")
    temperature: float = Field(1.0, gt=0, allow_inf_nan=False, description="Sampling temperature of the rollouts.")
    top_p: float = Field(1.0, gt=0, le=1)
    kl_beta: float = Field(0.04, ge=0, allow_inf_nan=False,
                           description="KL coefficient to the starting model; 0 skips the reference pass (no KL logged).")
    scale_rewards: Literal["group", "batch", "none"] = Field("group", description="Advantage scaling (TRL's scale_rewards).")
    generation_batch_size: int | None = Field(
        None, ge=1, description="Completions generated at once (default: batch_size x processes x grad_accum).")
    disable_dropout: bool = Field(True, description="No dropout: old, reference and policy log-probs agree.")
    merged_generation: bool = Field(
        True, description="Generate the rollouts from merged LoRA weights (copied back exactly after each "
        "generation): plain matmuls instead of the adapter's extra ones; costs one copy of the adapted weights.")
    use_vllm: bool = Field(False, description="Generate with vLLM (GPU only; needs the vllm package). Untested here.")
    vllm_mode: Literal["colocate", "server"] = Field("colocate", description="vLLM in the training process or a server.")
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, le=1, description="colocate: share of GPU memory for vLLM.")
    max_prompt_tokens: int | None = Field(
        None, ge=1, description="Prompts longer than this are rejected (default: max_length - max_completion_length).")

    @model_validator(mode="after")
    def _unique_labels(self) -> GrpoSettings:
        seen: dict[str, int] = {}
        for i, spec in enumerate(self.rewards):
            if spec.key in seen:
                raise ValueError(f"rewards[{i}] and rewards[{seen[spec.key]}] are both logged as {spec.key!r}: "
                                 f"give one a `label`")
            seen[spec.key] = i
        return self
