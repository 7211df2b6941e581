"""``train(config)``: prepare data and model, run transformers/TRL, write the output layout."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from tunelens.errors import ConfigError, TunelensError
from tunelens.train.config import TrainConfig
from tunelens.train.data import PreparedData, check_data_file, prepare_dpo, prepare_sft
from tunelens.train.hardware import check_memory, choose_precision, estimate_training_bytes
from tunelens.train.outputs import write_loss_curve, write_manifest

console = Console(stderr=True)


@dataclass
class TrainResult:
    output_dir: Path
    method: str
    steps: int
    final_loss: float | None
    tokens_per_s: float | None
    wall_s: float
    interrupted: bool = False
    adapter_dir: Path | None = None
    model_dir: Path | None = None
    merged_dir: Path | None = None
    data_stats: dict[str, int] = field(default_factory=dict)


def last_checkpoint(checkpoints: Path) -> Path | None:
    found = []
    for p in checkpoints.glob("checkpoint-*") if checkpoints.is_dir() else []:
        m = re.fullmatch(r"checkpoint-(\d+)", p.name)
        if m and (p / "trainer_state.json").is_file():
            found.append((int(m.group(1)), p))
    return max(found)[1] if found else None


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _load_base(config: TrainConfig, path: Path, precision: str):
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if config.peft == "qlora":
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if precision == "bf16" else torch.float16
        kwargs.update(dtype=compute, quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute))
    try:
        return AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    except OSError as exc:
        raise TunelensError(f"cannot load model {config.model!r} from {path}: {exc}") from exc


def _wrap_peft(config: TrainConfig, model: Any):
    if config.peft == "none":
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if config.peft == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    lora = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                      target_modules=config.lora.target_modules, task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:  # target modules not found
        raise ConfigError(f"lora.target_modules: {exc}") from None


def _check_peft_available(config: TrainConfig) -> None:
    import torch

    if config.peft == "qlora":
        missing = [n for n, ok in (("a CUDA device", torch.cuda.is_available()),
                                   ("the bitsandbytes package", importlib.util.find_spec("bitsandbytes") is not None))
                   if not ok]
        if missing:
            raise ConfigError(f"peft: qlora needs {' and '.join(missing)}; use peft: lora on this machine")


# report_to name -> (the module transformers looks for, the pip install command)
TRACKER_PACKAGES = {
    "tensorboard": ("tensorboard", "pip install tensorboard"),
    "mlflow": ("mlflow", "pip install mlflow-skinny (or mlflow)"),
    "wandb": ("wandb", "pip install wandb"),
}


def check_trackers(report_to: list[str]) -> None:
    """A clear error, before any model is loaded, for a tracker whose package is not installed."""
    for name in report_to:
        module, install = TRACKER_PACKAGES[name]
        found = importlib.util.find_spec(module) is not None
        if name == "tensorboard" and not found:  # transformers also accepts tensorboardX
            found = importlib.util.find_spec("tensorboardX") is not None
        if not found:
            raise ConfigError(f"report_to: {name} needs the package {module!r}, which is not installed: {install}")


@contextlib.contextmanager
def tracker_errors(report_to: list[str]):
    """A tracker's own failure (an MLflow store it refuses, a W&B login) as a TunelensError naming the
    tracker, not a traceback from inside the trainer's callbacks."""
    try:
        yield
    except Exception as exc:
        module = type(exc).__module__.split(".")[0]
        if report_to and module in {"mlflow", "wandb", "tensorboard", "tensorboardX"}:
            raise TunelensError(f"report_to: the {module} tracker failed: {exc}") from exc
        raise


def finish_trackers(report_to: list[str]) -> None:
    """Close what transformers' callbacks leave open at the end of training: a W&B run stays open
    (and, offline, unwritten) until the process exits, and the next run of this process would log into it."""
    if "wandb" in report_to and _is_main_process():
        import wandb

        if wandb.run is not None:
            wandb.finish()


def _training_args(config: TrainConfig, precision, checkpoints: Path, dpo: bool):
    import torch

    # Every TrainConfig field whose TrainingArguments name differs is marked "renamed".
    common: dict[str, Any] = dict(
        output_dir=str(checkpoints),
        per_device_train_batch_size=config.batch_size,  # renamed: batch_size (per device, per micro-batch)
        gradient_accumulation_steps=config.grad_accum,  # renamed: grad_accum
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,  # renamed: epochs (used only when max_steps is -1)
        max_steps=config.max_steps,  # -1 (TrainConfig allows no other value <= 0): train for num_train_epochs
        lr_scheduler_type=config.lr_scheduler,  # renamed: lr_scheduler
        # renamed: warmup_ratio. Correct only because transformers reads a warmup_steps below 1 as a
        # ratio of the total steps (ceil(total * value)); TrainConfig keeps warmup_ratio in [0, 1).
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        save_strategy="steps", save_steps=config.save_steps, save_total_limit=config.save_total_limit,
        logging_strategy="steps", logging_steps=config.logging_steps,
        seed=config.seed, data_seed=config.seed,  # data_seed: the same seed also orders the data
        activation_checkpointing=config.gradient_checkpointing,  # renamed: gradient_checkpointing (its new name)
        use_cpu=not torch.cuda.is_available(),
        report_to=list(config.report_to), run_name=config.out.name or None,  # trackers (see check_trackers)
        disable_tqdm=True, remove_unused_columns=False, dataloader_num_workers=0,
        ddp_find_unused_parameters=False, torch_compile=config.torch_compile,
        **precision.trainer_flags,  # renamed: precision (auto resolved by choose_precision) becomes bf16/fp16 flags
        # renamed: group_by_length (a bool) becomes the sampling strategy; DPO batches pairs at random.
        train_sampling_strategy="group_by_length" if (config.group_by_length and not dpo) else "random",
    )
    if config.method == "grpo":
        from tunelens.train.grpo import grpo_args

        return grpo_args(config, common)
    if dpo:
        from trl import DPOConfig

        return DPOConfig(beta=config.beta, max_length=config.max_length, truncation_mode="keep_start", **common)
    from transformers import TrainingArguments

    return TrainingArguments(length_column_name="length", **common)


def _prepare_output(config: TrainConfig) -> tuple[Path, Path | None]:
    out = config.out
    checkpoints = out / "checkpoints"
    resume_from = None
    if config.resume:
        resume_from = last_checkpoint(checkpoints)
        if resume_from is None:
            raise TunelensError(f"--resume: no checkpoint to resume from in {checkpoints}")
    elif last_checkpoint(checkpoints) is not None:
        raise TunelensError(f"{out} already holds checkpoints: pass --resume to continue, or choose another -o")
    if _is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        metrics = out / "metrics.jsonl"
        if resume_from is not None and metrics.is_file():
            # Keep the metrics of the steps the checkpoint covers; later ones will be redone.
            step = int(resume_from.name.split("-")[1])
            keep = [ln for ln in metrics.read_text(encoding="utf-8").splitlines()
                    if ln.strip() and json.loads(ln)["step"] <= step]
            metrics.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")
        elif resume_from is None:
            metrics.unlink(missing_ok=True)
    return checkpoints, resume_from


def _write_dropped(out: Path, data: PreparedData) -> None:
    path = out / "dropped_examples.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for row in data.dropped:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _report_data(data: PreparedData, config: TrainConfig) -> None:
    s = data.stats()
    console.print(
        f"[cyan]data:[/] {s['examples_used']}/{s['examples_total']} examples used, "
        f"{s['examples_truncated']} truncated to max_length {config.max_length}, "
        f"{s['examples_dropped']} dropped" + (" (reasons in dropped_examples.jsonl)" if s["examples_dropped"] else "")
    )


def train(config: TrainConfig, progress: bool = True) -> TrainResult:
    """Run one training job described by ``config``; see the package docstring for the outputs."""
    from datasets import Dataset

    from tunelens.models import load_tokenizer, resolve_model
    from tunelens.train.trainer import (
        GracefulStopCallback, MetricsCallback, RichProgressCallback, SFTCollator, SupervisedTrainer,
        ThroughputMixin, install_supervised_head,
    )

    started = time.perf_counter()
    main = _is_main_process()
    dpo = config.method == "dpo"
    _check_peft_available(config)
    check_trackers(config.report_to)
    if config.method == "grpo":
        return _train_grpo(config, progress)
    for name in config.data:  # a bad data file fails now, not after the model is converted and loaded
        check_data_file(name)
    precision = choose_precision(config.precision)
    path, model_id, revision = resolve_model(config.model, progress=progress)
    if path.is_dir():
        path = path.resolve()
        if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
            raise TunelensError(f"{path} is a PEFT adapter; train from a full model (merge it first with --merge)")
    checkpoints, resume_from = _prepare_output(config)
    tokenizer = load_tokenizer(str(path))
    tokenizer.padding_side = "right"

    prepare = prepare_dpo if dpo else prepare_sft
    data = prepare(tokenizer, config.data, config.max_length, config.length_policy)
    if main:
        _write_dropped(config.out, data)
        _report_data(data, config)

    from transformers import set_seed

    set_seed(config.seed)  # before PEFT wraps the model: the LoRA init is random
    model = _load_base(config, path, precision.name)
    context = getattr(model.config, "max_position_embeddings", None)
    if context and config.max_length > context:
        raise ConfigError(f"max_length: {config.max_length} exceeds the model's context of {context} tokens")
    total_params = sum(p.numel() for p in model.parameters())
    use_head = config.supervised_head and not dpo and install_supervised_head(model)
    model = _wrap_peft(config, model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    estimate = estimate_training_bytes(config, model.config, total_params, trainable, precision.name, world_size)
    memory = {"estimate_bytes": estimate}
    if config.memory_check:
        available, kind = check_memory(estimate)
        memory.update(available_bytes=available, kind=kind)

    args = _training_args(config, precision, checkpoints, dpo)
    callbacks = [MetricsCallback(config.out / "metrics.jsonl"), GracefulStopCallback()]
    if progress:
        callbacks.append(RichProgressCallback(f"{config.method} {config.peft}"))
    dataset = Dataset.from_list(data.rows)
    if dpo:
        from trl import DPOTrainer

        class TunelensDPOTrainer(ThroughputMixin, DPOTrainer):
            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                if model.training:
                    if self._tl_last_time is None:
                        self._tl_last_time = time.perf_counter()
                    self._tl_count(int(inputs["completion_mask"].sum()))
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        trainer = TunelensDPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                     callbacks=callbacks)
    else:
        trainer = SupervisedTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                    data_collator=SFTCollator(tokenizer.pad_token_id), callbacks=callbacks,
                                    use_supervised_head=use_head)
    from transformers import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    stopper = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, GracefulStopCallback))

    import torch.distributed as dist

    backend = dist.get_backend() if dist.is_available() and dist.is_initialized() else None
    if main:
        write_manifest(config, precision, model_id, revision, path, memory, use_head, world_size, backend)
    if resume_from is not None and main:
        console.print(f"[cyan]resuming from {resume_from}[/]")
    with tracker_errors(config.report_to):
        output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    interrupted = stopper.received is not None
    finish_trackers(config.report_to)

    result = TrainResult(output_dir=config.out, method=config.method, steps=trainer.state.global_step,
                         final_loss=None, tokens_per_s=None, wall_s=0.0, interrupted=interrupted,
                         data_stats=data.stats())
    trainer.accelerator.wait_for_everyone()
    if main:
        if not interrupted:
            _save_final(config, trainer, tokenizer, result)
        history = [h for h in trainer.state.log_history if "loss" in h]
        result.final_loss = history[-1]["loss"] if history else None
        rates = [h["tokens_per_s"] for h in history if "tokens_per_s" in h]
        result.tokens_per_s = round(sum(rates) / len(rates), 2) if rates else None
        result.wall_s = round(time.perf_counter() - started, 2)
        summary = {
            "method": config.method, "peft": config.peft, "steps": result.steps, "final_loss": result.final_loss,
            "tokens_per_s": result.tokens_per_s, "train_runtime_s": output.metrics.get("train_runtime"),
            "wall_s": result.wall_s, "interrupted": interrupted, "resumed_from": str(resume_from) if resume_from else None,
            "precision": precision.name, "supervised_head": bool(use_head), **data.stats(),
        }
        if dpo and history:
            for key, name in (("rewards/margins", "final_reward_margin"), ("rewards/accuracies", "final_reward_accuracy")):
                if key in history[-1]:
                    summary[name] = history[-1][key]
        (config.out / "train_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        write_loss_curve(config.out / "metrics.jsonl", config.out / "loss_curve.png", config.method)
    trainer.accelerator.wait_for_everyone()
    return result


def _save_final(config: TrainConfig, trainer: Any, tokenizer: Any, result: TrainResult) -> None:
    from tunelens.models.base import base_name, mark_saved_model
    from tunelens.train.outputs import manifest_base

    out = config.out
    base = manifest_base(out)  # how another machine gets this base (hub id, embedded GGUF, tiny spec)
    model = trainer.accelerator.unwrap_model(trainer.model)
    if config.peft == "none":
        target = out / "model"
        _fresh(target)
        model.save_pretrained(target, safe_serialization=True)
        tokenizer.save_pretrained(target)
        mark_saved_model(target, base, adapter=False)
        result.model_dir = target
        return
    target = out / "adapter"
    _fresh(target)
    for peft_config in model.peft_config.values():  # never the local cache path of the base
        peft_config.base_model_name_or_path = base_name(base)
        peft_config.revision = base.get("revision")
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    mark_saved_model(target, base, adapter=True)
    result.adapter_dir = target
    if config.merge:
        merged_dir = out / "merged"
        _fresh(merged_dir)
        merged = model.merge_and_unload()
        merged.save_pretrained(merged_dir, safe_serialization=True)
        tokenizer.save_pretrained(merged_dir)
        mark_saved_model(merged_dir, base, adapter=False)
        result.merged_dir = merged_dir


def _fresh(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def result_dict(result: TrainResult) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()}


def _train_grpo(config: TrainConfig, progress: bool) -> TrainResult:
    """GRPO on TRL's GRPOTrainer (``tunelens.train.grpo``): the same outputs, resume and manifest as SFT,
    plus ``rejects.jsonl`` (prompts no reward can check) and ``reward_curve.png``."""
    from datasets import Dataset
    from transformers import PrinterCallback, ProgressCallback, set_seed

    from tunelens.models import load_tokenizer, resolve_model
    from tunelens.train import grpo
    from tunelens.train.trainer import GracefulStopCallback, RichProgressCallback

    started = time.perf_counter()
    main = _is_main_process()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    grpo.check_batch(config, world_size)
    for name in config.data:
        check_data_file(name)
    precision = choose_precision(config.precision)
    path, model_id, revision = resolve_model(config.model, progress=progress)
    if path.is_dir():
        path = path.resolve()
    adapter = path.is_dir() and (path / "adapter_config.json").is_file() and not (path / "config.json").is_file()
    if adapter and config.peft == "none":
        raise ConfigError(f"{path} is a PEFT adapter: full GRPO fine-tuning needs a full model; merge it first "
                          "(train the SFT run with --merge and pass OUT/merged), or keep peft: lora")
    max_prompt = grpo.max_prompt_tokens(config)
    checkpoints, resume_from = _prepare_output(config)
    tokenizer = load_tokenizer(str(path))
    prompts = grpo.prepare_prompts(tokenizer, config.data, config.grpo.rewards, max_prompt)
    composed = grpo.Composed(config.grpo.rewards, prompts.items)
    labels = [s.key for s in config.grpo.rewards]
    if main:
        grpo.write_rejects(config.out, prompts)
        s = prompts.stats()
        console.print(f"[cyan]prompts:[/] {s['prompts_used']}/{s['prompts_total']} used, {s['prompts_rejected']} "
                      "rejected" + (" (reasons in rejects.jsonl)" if s["prompts_rejected"] else ""))

    set_seed(config.seed)  # before PEFT wraps the model: the LoRA init is random
    if adapter:
        # SFT then RL: the SFT adapter goes on training (its own rank and targets; `lora:` is not used), so
        # OUT/adapter is one adapter on the same base holding SFT + RL. TRL keeps a frozen copy of it as
        # the KL reference, so the reference is the SFT model.
        from peft import PeftModel

        from tunelens.models.base import adapter_base

        # The base record, not base_model_name_or_path: for the embedded default that names the hub id
        # (HuggingFaceTB/SmolLM2-135M-Instruct), which is not reachable offline; the record rebuilds the
        # dequantised GGUF base the adapter was trained on.
        base_spec = adapter_base(path)
        if not base_spec:
            raise ConfigError(f"adapter {path} names no base model (base_model_name_or_path in adapter_config.json)")
        base_path = resolve_model(base_spec, progress=progress)[0]
        model = PeftModel.from_pretrained(_load_base(config, base_path, precision.name), str(path), is_trainable=True)
        total_params = sum(p.numel() for p in model.get_base_model().parameters())
    else:
        model = _load_base(config, path, precision.name)
        total_params = sum(p.numel() for p in model.parameters())
    context = getattr(model.config, "max_position_embeddings", None)
    if context and config.max_length > context:
        raise ConfigError(f"max_length: {config.max_length} exceeds the model's context of {context} tokens")
    if not adapter:
        model = _wrap_peft(config, model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    estimate = estimate_training_bytes(config, model.config, total_params, trainable, precision.name, world_size)
    memory = {"estimate_bytes": estimate}
    if config.memory_check:
        available, kind = check_memory(estimate)
        memory.update(available_bytes=available, kind=kind)

    try:
        args = _training_args(config, precision, checkpoints, dpo=False)
    except ValueError as exc:  # TRL's own checks of the GRPO arguments
        raise ConfigError(f"grpo: {exc}") from None
    callbacks = [grpo.metrics_callback(config.out / "metrics.jsonl", labels), GracefulStopCallback()]
    if progress:
        callbacks.append(RichProgressCallback(f"grpo {config.peft}"))
    dataset = Dataset.from_list([{"prompt": item.messages, "item_index": i} for i, item in enumerate(prompts.items)])
    trainer = grpo.trainer_class(merged_generation=config.grpo.merged_generation)(model=model, reward_funcs=composed.functions(), args=args, train_dataset=dataset,
                                   processing_class=tokenizer, callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    stopper = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, GracefulStopCallback))

    import torch.distributed as dist

    backend = dist.get_backend() if dist.is_available() and dist.is_initialized() else None
    if main:
        write_manifest(config, precision, model_id, revision, path, memory, False, world_size, backend)
        manifest_path = config.out / "manifest.json"
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        manifest["model"]["start"] = (f"adapter {path} on its base, trained further (lora: settings unused)"
                                      if adapter else "full model")
        manifest["rewards"] = grpo.describe_rewards(composed)
        sft_base = path / "tunelens_base.json"
        if adapter and "base" in manifest["model"] and sft_base.is_file():  # the base is the SFT adapter's base
            manifest["model"]["base"] = json.loads(sft_base.read_text(encoding="utf-8"))
        manifest_path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if resume_from is not None:
            console.print(f"[cyan]resuming from {resume_from}[/]")
    with tracker_errors(config.report_to):
        output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    interrupted = stopper.received is not None
    finish_trackers(config.report_to)

    result = TrainResult(output_dir=config.out, method="grpo", steps=trainer.state.global_step, final_loss=None,
                         tokens_per_s=None, wall_s=0.0, interrupted=interrupted, data_stats=prompts.stats())
    trainer.accelerator.wait_for_everyone()
    if main:
        if not interrupted:
            unwrapped = trainer.accelerator.unwrap_model(trainer.model)
            if "ref" in getattr(unwrapped, "peft_config", {}):  # TRL's frozen copy of the start adapter
                unwrapped.delete_adapter("ref")
            _save_final(config, trainer, tokenizer, result)
            if adapter:
                _rebase_on_sft_base(path, result)
        history = [h for h in trainer.state.log_history if "loss" in h]
        last = history[-1] if history else {}
        result.final_loss = last.get("loss")
        rates = [h["tl/train_tokens_per_s"] for h in history if h.get("tl/train_tokens_per_s")]
        result.tokens_per_s = round(sum(rates) / len(rates), 2) if rates else None
        result.wall_s = round(time.perf_counter() - started, 2)
        rows = [json.loads(ln) for ln in (config.out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
                if ln.strip()] if (config.out / "metrics.jsonl").is_file() else []
        k = min(5, len(rows))
        mean = (lambda rs: round(sum(r["reward"] for r in rs) / len(rs), 4) if rs else None)
        time_keys = ("generate_s", "reward_s", "train_s")
        spent = {key: round(sum(r.get(key, 0.0) for r in rows), 2) for key in time_keys}
        summary = {
            "method": "grpo", "peft": config.peft, "steps": result.steps, "final_loss": result.final_loss,
            "reward_first_steps": mean(rows[:k]), "reward_last_steps": mean(rows[-k:]), "reward_window": k,
            "final_kl": last.get("kl"), "train_tokens_per_s": result.tokens_per_s,
            "time_s": spent, "train_runtime_s": output.metrics.get("train_runtime"), "wall_s": result.wall_s,
            "interrupted": interrupted, "resumed_from": str(resume_from) if resume_from else None,
            "precision": precision.name, "start": "sft-adapter" if adapter else "model", **prompts.stats(),
        }
        (config.out / "train_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        write_loss_curve(config.out / "metrics.jsonl", config.out / "loss_curve.png", "grpo")
        grpo.write_reward_curve(config.out / "metrics.jsonl", config.out / "reward_curve.png", labels)
    trainer.accelerator.wait_for_everyone()
    return result


def _rebase_on_sft_base(sft_adapter: Path, result: TrainResult) -> None:
    """GRPO continued an SFT adapter: OUT/adapter (and OUT/merged) sit on the SFT adapter's base, so
    they name that base as the SFT adapter does, not the SFT adapter itself."""
    base = json.loads((sft_adapter / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
    if result.adapter_dir is not None:
        cfg_path = result.adapter_dir / "adapter_config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        cfg["base_model_name_or_path"] = base
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    record = sft_adapter / "tunelens_base.json"
    for saved in (result.adapter_dir, result.merged_dir):
        if saved is not None and record.is_file() and (saved / record.name).is_file():
            shutil.copyfile(record, saved / record.name)
