"""Precision from the hardware, and a memory estimate checked before training starts."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import Any

from tunelens.errors import TunelensError


@dataclass
class Precision:
    name: str  # "fp32" | "bf16" | "fp16"
    reason: str

    @property
    def trainer_flags(self) -> dict[str, bool]:
        return {"bf16": self.name == "bf16", "fp16": self.name == "fp16"}


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: the only CPUs where bf16 autocast is not an emulation slowdown."""
    try:
        flags = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def choose_precision(requested: str = "auto") -> Precision:
    import torch

    cuda = torch.cuda.is_available()
    if requested == "auto":
        if cuda and torch.cuda.is_bf16_supported():
            return Precision("bf16", "CUDA device with bf16 support")
        if cuda:
            return Precision("fp16", "CUDA device without bf16")
        return Precision("fp32", "CPU: fp32 (bf16 autocast on CPU is slow without native bf16 and was measured slower "
                                 "with gradient checkpointing; request precision: bf16 to override on AVX512-BF16/AMX)")
    if requested == "bf16" and not cuda and not cpu_has_native_bf16():
        raise TunelensError("precision bf16 requested on a CPU without native bf16; use fp32 (or auto)")
    if requested == "fp16" and not cuda:
        raise TunelensError("precision fp16 needs a CUDA device; use fp32 (or auto) on CPU")
    return Precision(requested, "requested in the config")


def hardware_summary() -> dict[str, Any]:
    import torch

    from tunelens.allocator import active_allocator

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "cuda": torch.cuda.is_available(),
        "allocator": active_allocator(),  # tcmalloc when `tunelens` preloaded it (tunelens.allocator)
    }
    if info["cuda"]:
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def available_memory_bytes() -> tuple[int, str]:
    """Free memory of the device training will use: GPU memory on CUDA, else RAM."""
    import torch

    if torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        return int(free), "GPU"
    import psutil

    return int(psutil.virtual_memory().available), "RAM"


def estimate_training_bytes(config: Any, model_config: Any, total_params: int, trainable_params: int,
                            precision: str, world_size: int = 1) -> int:
    """A rough worst-case estimate (every sequence at max_length): weights + grads + Adam state
    + activations of one micro-batch.

    Activations follow Korthikanti et al. 2022 (34 * hidden bytes per token and layer in 16-bit,
    no recomputation; the attention-score term is left out because SDPA does not materialise it);
    logits add tokens * vocab fp32 values, x3 for the softmax and its gradient.
    """
    act_scale = 1 if precision in {"bf16", "fp16"} else 2  # the formula counts 16-bit values
    weight_bytes = 0.5 if config.peft == "qlora" else (2 if precision in {"bf16", "fp16"} and config.peft == "none" else 4)
    hidden = getattr(model_config, "hidden_size", 0) or 0
    layers = getattr(model_config, "num_hidden_layers", 0) or 0
    vocab = getattr(model_config, "vocab_size", 0) or 0
    tokens = config.batch_size * config.max_length
    pairs = 2 if config.method == "dpo" else 1  # chosen + rejected in one batch
    per_layer = 34 * hidden if not config.gradient_checkpointing else 2 * hidden
    activations = pairs * tokens * layers * per_layer * act_scale
    logits = pairs * tokens * vocab * 4 * 3
    states = trainable_params * (4 + 4 + 8)  # fp32 master grads + Adam m, v
    return int(total_params * weight_bytes + states + activations + logits)


def check_memory(estimate: int, margin: float = 1.0) -> tuple[int, str]:
    available, kind = available_memory_bytes()
    if estimate > available * margin:
        gib = 1024**3
        raise TunelensError(
            f"out-of-memory risk: this run needs about {estimate / gib:.1f} GiB of {kind} "
            f"(weights, gradients, optimizer state, activations for batch_size x max_length) but only "
            f"{available / gib:.1f} GiB is free. Lower batch_size or max_length, use LoRA, or enable "
            "gradient_checkpointing (or set memory_check: false to try anyway)."
        )
    return available, kind
