"""GRPO pieces (``method: grpo``) on TRL's ``GRPOTrainer``: prompts from data-stage records,
the composed rewards, TRL's arguments, a trainer that times generation and training apart, the
per-step metrics and the reward curve. ``tunelens.train.run.train`` puts them together with the
output layout, resume and manifest it shares with SFT and DPO.

Per logging step ``metrics.jsonl`` holds: ``reward`` (the weighted total), ``reward_<label>``
(each reward's mean over the completions it applies to), ``reward_std``, ``kl`` (to the starting
model; absent with ``kl_beta: 0``), ``completion_length``, ``clipped_ratio`` (completions that hit
``max_completion_length``), ``zero_std_groups`` (share of prompt groups whose completions all got
the same reward: no learning signal), ``entropy``, ``generate_s``/``reward_s``/``train_s`` (where
the step's time went), ``generate_tokens_per_s`` (completion tokens sampled per second of
generation) and ``train_tokens_per_s`` (prompt + completion tokens per second of the rest: the
log-prob passes, loss, backward and optimizer step).
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelens.errors import ConfigError, TunelensError
from tunelens.train.rewards import Composed, Item, RewardError
from tunelens.train.rewards import REGISTRY as REWARDS

__all__ = ["Composed", "PromptSet", "RewardError", "grpo_args", "metrics_callback", "prepare_prompts",
           "trainer_class", "write_reward_curve"]


@dataclass
class PromptSet:
    items: list[Item]
    rejects: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0

    def stats(self) -> dict[str, int]:
        return {"prompts_total": self.total, "prompts_used": len(self.items), "prompts_rejected": len(self.rejects)}


def _messages(row: dict[str, Any]) -> list[dict[str, str]] | str:
    """The prompt turns of a data-stage row, or why there are none."""
    if isinstance(row.get("messages"), list):  # a conversation record: everything before the last reply
        msgs = [m for m in row["messages"] if isinstance(m, dict)]
        while msgs and msgs[-1].get("role") == "assistant":
            msgs = msgs[:-1]
    elif isinstance(row.get("prompt"), list):  # a preference record
        msgs = [m for m in row["prompt"] if isinstance(m, dict)]
    elif isinstance(row.get("prompt"), str):  # an IFEval row or a bare {"prompt": ...}
        msgs = [{"role": "user", "content": row["prompt"]}]
    else:
        return "no prompt: the row has neither messages nor a prompt"
    msgs = [{"role": str(m.get("role")), "content": str(m.get("content", ""))} for m in msgs]
    if not msgs or msgs[-1]["role"] != "user" or not msgs[-1]["content"].strip():
        return "no prompt: the conversation does not end with a non-empty user turn"
    return msgs


def prepare_prompts(tokenizer: Any, paths: list[str], specs: list[Any], max_prompt_tokens: int) -> PromptSet:
    """Every prompt of ``paths`` as an :class:`Item`; rows no configured verifier reward can check,
    rows without a prompt and prompts over ``max_prompt_tokens`` go to ``rejects`` with the reason."""
    from tunelens.records import iter_jsonl_numbered
    from tunelens.train.data import check_data_file

    if not paths:
        raise TunelensError("no prompts: pass --prompts FILE (records JSONL, e.g. the suite's train split)")
    rewards = [REWARDS.get(s.name)(s.options) for s in specs]
    verifiers = [(s, r) for s, r in zip(specs, rewards, strict=True) if r.verifier]
    out = PromptSet(items=[])
    for name in paths:
        path = check_data_file(name)
        try:
            rows = list(iter_jsonl_numbered(path))
        except ValueError as exc:
            raise TunelensError(str(exc)) from None
        for line, row in rows:
            out.total += 1
            item_id = str(row.get("id") or row.get("key") or f"{path.name}:{line}")
            msgs = _messages(row)
            reasons: list[str] = []
            if isinstance(msgs, str):
                reasons.append(msgs)
            else:
                item = Item(id=item_id, messages=msgs, record=row)
                problems = [r.problem(item) for _, r in verifiers]
                if verifiers and all(p is not None for p in problems):
                    reasons.extend(p for p in problems if p)
                else:
                    text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
                    n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
                    if n > max_prompt_tokens:
                        reasons.append(f"prompt of {n} tokens exceeds max_prompt_tokens {max_prompt_tokens} "
                                       "(max_length - max_completion_length unless set)")
            if reasons:
                out.rejects.append({"id": item_id, "file": str(path), "line": line, "reason": "; ".join(reasons)})
            else:
                out.items.append(item)
    if not out.items:
        first = out.rejects[0]["reason"] if out.rejects else "the files are empty"
        raise TunelensError(f"no usable prompts in {', '.join(paths)}: all {out.total} rejected (first: {first}); "
                            "reasons in rejects.jsonl")
    return out


def check_batch(config: Any, world_size: int) -> None:
    """GRPO needs whole prompt groups in every generation batch: say which fields to change."""
    g = config.grpo
    per_step = config.batch_size * world_size
    gen = g.generation_batch_size or per_step * config.grad_accum
    if gen % per_step:
        raise ConfigError(f"grpo.generation_batch_size: {gen} must be a multiple of batch_size x processes ({per_step})")
    if gen % g.num_generations:
        raise ConfigError(f"batch_size: the generation batch (batch_size {config.batch_size} x {world_size} process(es) "
                          f"x grad_accum {config.grad_accum} = {gen} completions) must be a multiple of "
                          f"grpo.num_generations ({g.num_generations})")


def grpo_args(config: Any, common: dict[str, Any]) -> Any:
    """TRL's GRPOConfig from the shared TrainingArguments fields plus the ``grpo:`` section."""
    from trl import GRPOConfig

    g = config.grpo
    common = dict(common)
    common.pop("train_sampling_strategy", None)  # GRPO samples prompt groups with its own RepeatSampler
    extra: dict[str, Any] = {}
    if g.use_vllm:
        extra.update(vllm_mode=g.vllm_mode, vllm_gpu_memory_utilization=g.vllm_gpu_memory_utilization)
    return GRPOConfig(
        num_generations=g.num_generations, max_completion_length=g.max_completion_length,
        temperature=g.temperature, top_p=g.top_p, beta=g.kl_beta, scale_rewards=g.scale_rewards,
        generation_batch_size=g.generation_batch_size, disable_dropout=g.disable_dropout,
        use_vllm=g.use_vllm, reward_weights=[float(s.weight) for s in g.rewards],
        log_completions=False, shuffle_dataset=True, **extra, **common,
    )


@contextlib.contextmanager
def completion_positions_only():
    """Score only the completion positions through the LM head on every device.

    TRL's fused log-prob head (``trl.trainer.utils.add_fused_lm_head``) projects only the positions
    it needs where Triton runs (CUDA/XPU) but *every* position, prompt included, elsewhere (kept
    for Neuron, which recompiles on every new shape). On a CPU that is a (prompt + completion) x
    vocabulary projection, in Python-loop chunks, for a completion-only result: with 100-token
    prompts, 32-token completions and SmolLM2's 49k vocabulary, about 4x the head's work, forward and
    backward. The completion positions get the same values either way; the others are zeros.
    """
    import trl.trainer.utils as trl_utils

    original = trl_utils._use_triton
    trl_utils._use_triton = lambda device: True
    try:
        yield
    finally:
        trl_utils._use_triton = original


@contextlib.contextmanager
def merged_lora(model: Any):
    """Generate from merged weights: each active LoRA adapter's delta is added into its base layer's
    weight for the duration, so generation runs plain matmuls instead of x W + (x A) B per layer,
    and each weight is copied back exactly afterwards (not subtracted: W + d - d drifts in floating
    point, and a resumed run must end with the same weights as an uninterrupted one).

    Why: TRL generates through the PEFT model, and on a CPU the unmerged LoRA path is most of the
    cost of a generated token for a small model (SmolLM2-135M with r16 on every linear layer:
    docs/benchmarks.md, "GRPO step time"). Costs one copy of the adapted weights while it lasts. A
    layer whose base weight is not a plain float tensor (4-bit QLoRA) is left unmerged.
    """
    import torch

    stash: list[tuple[Any, str, torch.Tensor]] = []
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # no PEFT: nothing to merge
        yield 0
        return
    try:
        with torch.no_grad():
            for module in model.modules():
                if not isinstance(module, LoraLayer) or module.merged or getattr(module, "disable_adapters", False):
                    continue
                base = module.get_base_layer()
                weight = getattr(base, "weight", None)
                if not isinstance(weight, torch.Tensor) or type(weight) is not torch.nn.Parameter or \
                        weight.dtype not in (torch.float32, torch.float16, torch.bfloat16):
                    continue
                adapters = [a for a in module.active_adapters if a in getattr(module, "lora_A", {})]
                if not adapters:
                    continue
                stash.append((module, adapters, weight.data.clone()))
                for name in adapters:
                    weight.data += module.get_delta_weight(name).to(weight.dtype)
                    module.merged_adapters.append(name)
        yield len(stash)
    finally:
        with torch.no_grad():
            for module, adapters, original in stash:
                module.get_base_layer().weight.data.copy_(original)
                for name in adapters:
                    module.merged_adapters.remove(name)


def trainer_class(compact_head: bool = True, merged_generation: bool = False) -> type:
    """GRPOTrainer that also measures generation, reward and training time and tokens apart (and,
    with ``compact_head``, scores only completion positions: :func:`completion_positions_only`;
    with ``merged_generation``, generates from merged LoRA weights: :func:`merged_lora`)."""
    import torch
    from trl import GRPOTrainer

    class TunelensGRPOTrainer(GRPOTrainer):
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self._tl = {"gen_s": 0.0, "gen_tokens": 0, "reward_s": 0.0, "step_s": 0.0, "train_tokens": 0}

        def _generate_single_turn(self, prompt_ids, *args: Any, **kwargs: Any):
            start = time.perf_counter()
            if merged_generation and not self.args.use_vllm and not self._sharded():
                with merged_lora(self.model):
                    completion_ids, logprobs = super()._generate_single_turn(prompt_ids, *args, **kwargs)
            else:
                completion_ids, logprobs = super()._generate_single_turn(prompt_ids, *args, **kwargs)
            self._tl["gen_s"] += time.perf_counter() - start
            self._tl["gen_tokens"] += sum(len(c) for c in completion_ids)
            return completion_ids, logprobs

        def _sharded(self) -> bool:
            # FSDP and DeepSpeed shard the weights: merging in place there is theirs to do (ZeRO-3
            # gathers them for generation); DDP and one process hold whole weights.
            return bool(getattr(self, "is_fsdp_enabled", False) or getattr(self, "is_deepspeed_enabled", False))

        def _get_per_token_logps_and_entropies(self, *args: Any, **kwargs: Any):
            if not compact_head:
                return super()._get_per_token_logps_and_entropies(*args, **kwargs)
            with completion_positions_only():
                return super()._get_per_token_logps_and_entropies(*args, **kwargs)

        def _calculate_rewards(self, *args: Any, **kwargs: Any):
            start = time.perf_counter()
            out = super()._calculate_rewards(*args, **kwargs)
            self._tl["reward_s"] += time.perf_counter() - start
            return out

        def training_step(self, model, inputs, num_items_in_batch=None):
            start = time.perf_counter()
            out = super().training_step(model, inputs, num_items_in_batch)
            self._tl["step_s"] += time.perf_counter() - start
            return out

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:
                self._tl["train_tokens"] += int(inputs["prompt_mask"].sum()) + int(inputs["completion_mask"].sum())
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if "loss" in logs and self.model.training:
                t = self._tl
                tokens = torch.tensor([float(t["gen_tokens"]), float(t["train_tokens"])], device=self.args.device)
                if self.args.world_size > 1:
                    tokens = self.accelerator.reduce(tokens, reduction="sum")
                gen_tokens, train_tokens = (float(x) for x in tokens.tolist())
                train_s = max(t["step_s"] - t["gen_s"] - t["reward_s"], 0.0)
                logs.update({
                    "tl/generate_s": round(t["gen_s"], 4), "tl/reward_s": round(t["reward_s"], 4),
                    "tl/train_s": round(train_s, 4), "tl/generate_tokens": int(gen_tokens),
                    "tl/generate_tokens_per_s": round(gen_tokens / t["gen_s"], 2) if t["gen_s"] > 0 else None,
                    "tl/train_tokens_per_s": round(train_tokens / train_s, 2) if train_s > 0 else None,
                })
                self._tl = {k: 0 if isinstance(v, int) else 0.0 for k, v in t.items()}
            super().log(logs, start_time)

    return TunelensGRPOTrainer


def metric_keys(labels: list[str]) -> dict[str, str]:
    """TRL / our log keys -> metrics.jsonl names."""
    keys = {
        "loss": "loss", "learning_rate": "lr", "grad_norm": "grad_norm", "epoch": "epoch",
        "reward": "reward", "reward_std": "reward_std", "kl": "kl", "entropy": "entropy",
        "completions/mean_length": "completion_length", "completions/clipped_ratio": "clipped_ratio",
        "frac_reward_zero_std": "zero_std_groups",
        "tl/generate_s": "generate_s", "tl/reward_s": "reward_s", "tl/train_s": "train_s",
        "tl/generate_tokens": "generate_tokens", "tl/generate_tokens_per_s": "generate_tokens_per_s",
        "tl/train_tokens_per_s": "train_tokens_per_s",
    }
    keys.update({f"rewards/{label}/mean": f"reward_{label}" for label in labels})
    return keys


def metrics_callback(path: Path, labels: list[str]) -> Any:
    from transformers import TrainerCallback

    keys = metric_keys(labels)

    class GrpoMetricsCallback(TrainerCallback):
        """One JSON line per logging step in OUT/metrics.jsonl (main process only)."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "loss" not in logs:
                return
            row: dict[str, Any] = {"step": state.global_step}
            for key, name in keys.items():
                if key in logs and logs[key] is not None:
                    row[name] = logs[key]
            with path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")

    return GrpoMetricsCallback()


def write_reward_curve(metrics: Path, png: Path, labels: list[str]) -> None:
    """The total reward and each reward's mean against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(ln) for ln in metrics.read_text(encoding="utf-8").splitlines() if ln.strip()] \
        if metrics.is_file() else []
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if rows:
        marker = "." if len(rows) < 50 else None
        for key, name, width in [("reward", "total (weighted)", 2.0)] + [(f"reward_{lb}", lb, 1.0) for lb in labels]:
            pts = [(r["step"], r[key]) for r in rows if key in r]
            if pts and not (key != "reward" and len(labels) == 1):
                ax.plot(*zip(*pts), marker=marker, linewidth=width, label=name)
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no logged steps", ha="center", transform=ax.transAxes)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("mean reward")
    ax.set_title("GRPO reward")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def write_rejects(out: Path, prompts: PromptSet) -> None:
    with (out / "rejects.jsonl").open("w", encoding="utf-8") as fh:
        for row in prompts.rejects:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def max_prompt_tokens(config: Any) -> int:
    n = config.grpo.max_prompt_tokens or config.max_length - config.grpo.max_completion_length
    if n < 1:
        raise ConfigError(f"max_length: {config.max_length} leaves no room for prompts after "
                          f"grpo.max_completion_length {config.grpo.max_completion_length}")
    return n


def describe_rewards(composed: Composed) -> list[dict[str, Any]]:
    return [{"name": s.name, "label": s.key, "weight": s.weight, **r.describe(),
             "applies_to": sum(a)} for s, r, a in zip(composed.specs, composed.rewards, composed.applies, strict=True)]
