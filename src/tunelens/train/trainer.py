"""Our pieces on top of transformers' Trainer: the supervised-positions loss, the collator,
throughput accounting, progress, metrics.jsonl and graceful SIGTERM."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback
from transformers.modeling_outputs import CausalLMOutputWithPast

from tunelens.train.masking import IGNORE_INDEX


def install_supervised_head(model: Any) -> bool:
    """Let ``model(..., supervised_loss=True)`` return the summed cross-entropy over supervised
    positions only: the backbone runs on all tokens, the LM head (49k-wide for SmolLM2) only where
    the shifted label is not -100. Prompt positions need no logits at all.

    The forward is patched on the instance (before PEFT wrapping) so that PEFT, DDP and FSDP
    wrappers still call it through their own forward. Returns False (nothing patched) for models
    that scale or cap their logits, which then use the standard forward.
    """
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logit_scale", None):
        return False
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    lm_head = model.get_output_embeddings()
    if decoder is None or lm_head is None:
        return False
    original_forward = model.forward

    def forward(*args: Any, supervised_loss: bool = False, **kwargs: Any):
        if not supervised_loss:
            return original_forward(*args, **kwargs)
        labels = kwargs.pop("labels")
        hidden = decoder(input_ids=kwargs["input_ids"], attention_mask=kwargs.get("attention_mask"),
                         use_cache=False).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE_INDEX
        logits = lm_head(hidden[:, :-1][keep]).float()
        loss = torch.nn.functional.cross_entropy(logits, targets[keep], reduction="sum")
        return CausalLMOutputWithPast(loss=loss)

    model.forward = forward
    return True


class SFTCollator:
    """Right-pads a batch to its own longest example (no fixed padding, no packing)."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        n = len(features)
        input_ids = torch.full((n, longest), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((n, longest), dtype=torch.long)
        labels = torch.full((n, longest), IGNORE_INDEX, dtype=torch.long)
        for i, f in enumerate(features):
            k = len(f["input_ids"])
            input_ids[i, :k] = torch.tensor(f["input_ids"])
            attention[i, :k] = 1
            labels[i, :k] = torch.tensor(f["labels"])
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


class LengthGroupedBatchSampler(torch.utils.data.Sampler):
    """transformers' length grouping with the batches of each mega-batch visited in random order.

    transformers sorts each mega-batch (up to 50 batches) longest first and walks it in that order,
    so every mega-batch runs long-to-short. On data whose lengths follow its task families (the
    builtin suite) that gives runs of one family at a time and a saw-tooth loss curve. The batches
    keep their low padding here; only their order is shuffled. The batch holding the longest
    example still comes first (an out-of-memory shows on step 1), and a short last batch stays last
    so that batch boundaries never move.
    """

    def __init__(self, lengths: list[int], batch_size: int, generator: torch.Generator | None = None):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.generator = generator

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        from transformers.trainer_pt_utils import get_length_grouped_indices

        n, bs = len(self.lengths), self.batch_size
        indices = get_length_grouped_indices(self.lengths, bs, generator=self.generator)
        mega = max(min(n // (bs * 4), 50), 1) * bs  # transformers' mega-batch size
        batches: list[list[int]] = []
        for start in range(0, n, mega):
            chunk = indices[start : start + mega]
            group = [chunk[i : i + bs] for i in range(0, len(chunk), bs)]
            tail = [group.pop()] if len(group[-1]) < bs else []
            order = torch.randperm(len(group), generator=self.generator).tolist()
            batches += [group[i] for i in order] + tail
        longest = max(range(len(batches)), key=lambda b: max(self.lengths[i] for i in batches[b]))
        if len(batches[longest]) == bs or len(batches) == 1:
            batches.insert(0, batches.pop(longest))
        return iter([i for batch in batches for i in batch])


class ThroughputMixin:
    """Adds ``supervised_tokens`` and ``tokens_per_s`` (summed over processes) to each training log."""

    _tl_tokens = 0
    _tl_last_time: float | None = None

    def _tl_count(self, n: int) -> None:
        self._tl_tokens += int(n)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            now = time.perf_counter()
            tokens = torch.tensor(float(self._tl_tokens), device=self.args.device)
            if self.args.world_size > 1:
                tokens = self.accelerator.reduce(tokens, reduction="sum")
            if self._tl_last_time is not None:
                logs["supervised_tokens"] = int(tokens.item())
                logs["tokens_per_s"] = round(tokens.item() / max(now - self._tl_last_time, 1e-9), 2)
            self._tl_tokens = 0
            self._tl_last_time = now
        super().log(logs, start_time)


class SupervisedTrainer(ThroughputMixin, Trainer):
    """Trainer whose loss is token-mean cross-entropy over assistant tokens, computed by the
    supervised head when installed, else by the model's own loss on the same labels."""

    def __init__(self, *args: Any, use_supervised_head: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.use_supervised_head = use_supervised_head
        # compute_loss below normalises by num_items_in_batch itself.
        self.loss_is_scaled_for_ga = True

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or "length" not in getattr(dataset, "column_names", []):
            return super()._get_train_sampler(train_dataset)
        return LengthGroupedBatchSampler(
            dataset["length"], self.args.train_batch_size * self.args.gradient_accumulation_steps
        )

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self._tl_last_time is None:
            self._tl_last_time = time.perf_counter()
        return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        local = int((labels[:, 1:] != IGNORE_INDEX).sum())
        if model.training:
            self._tl_count(local)
        if self.use_supervised_head:
            loss_sum = model(**inputs, supervised_loss=True).loss
            outputs = None
        else:
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            logits = outputs.logits[:, :-1].float()
            loss_sum = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                ignore_index=IGNORE_INDEX, reduction="sum")
        if num_items_in_batch is not None:
            loss = loss_sum / max(float(num_items_in_batch), 1.0)
            if self.args.average_tokens_across_devices and self.args.world_size > 1:
                loss = loss * self.args.world_size  # DDP averages gradients over processes
        else:
            loss = loss_sum / max(local, 1) / self.args.gradient_accumulation_steps
        return (loss, outputs) if return_outputs else loss


METRIC_KEYS = {
    "loss": "loss", "learning_rate": "lr", "grad_norm": "grad_norm", "tokens_per_s": "tokens_per_s",
    "supervised_tokens": "supervised_tokens", "epoch": "epoch",
    "rewards/margins": "reward_margin", "rewards/accuracies": "reward_accuracy",
    "rewards/chosen": "reward_chosen", "rewards/rejected": "reward_rejected",
}


class MetricsCallback(TrainerCallback):
    """Appends one JSON line per logging step to OUT/metrics.jsonl (main process only)."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        row: dict[str, Any] = {"step": state.global_step}
        for key, name in METRIC_KEYS.items():
            if key in logs:
                row[name] = logs[key]
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


class RichProgressCallback(TrainerCallback):
    """A rich progress bar with loss, tokens/s and ETA, replacing transformers' tqdm."""

    def __init__(self, description: str):
        self.description = description
        self.progress = None
        self.task = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold cyan]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        )
        self.progress.start()
        self.task = self.progress.add_task(self.description, total=state.max_steps, completed=state.global_step,
                                           loss="-", tps="-")

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is None or not logs or "loss" not in logs:
            return
        self.progress.update(self.task, loss=f"{logs['loss']:.4f}", tps=f"{logs.get('tokens_per_s', 0):.0f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class GracefulStopCallback(TrainerCallback):
    """On SIGTERM (or SIGINT), finish the current step, save a checkpoint and stop."""

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame):
        self.received = signum

    def on_train_begin(self, args, state, control, **kwargs):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave the default handlers
                pass

    def on_step_end(self, args, state, control, **kwargs):
        if self.received is not None:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
