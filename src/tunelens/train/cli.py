"""CLI for the train stage: ``tunelens train``."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console


def train_command(
    method: str = typer.Option(None, "--method", help="sft (conversation records), dpo (preference records) or grpo "
                               "(prompts + verifiable rewards; see docs/grpo.md)."),
    model: str = typer.Option(None, "--model", "-m", help="Hub id, local HF dir, .gguf file, smollm2-135m or tiny-random."),
    data: list[Path] = typer.Option(None, "--data", "-d", help="Records JSONL file; repeat for several."),
    prompts: list[Path] = typer.Option(None, "--prompts", help="GRPO: prompt records JSONL (e.g. the suite's train "
                                       "split); repeat for several. The same as --data."),
    num_generations: int = typer.Option(None, "--num-generations", help="GRPO: completions sampled per prompt."),
    max_completion_length: int = typer.Option(None, "--max-completion-length", help="GRPO: longest completion (tokens)."),
    output_dir: Path = typer.Option(None, "--output", "-o", help="Output directory (adapter/, checkpoints/, metrics...)."),
    config: Path = typer.Option(None, "--config", "-c", help="YAML training config; the options given here override it."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in OUT/checkpoints."),
    max_steps: int = typer.Option(None, "--max-steps", help="Optimizer steps (overrides --epochs)."),
    epochs: float = typer.Option(None, "--epochs", help="Passes over the data."),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate."),
    batch_size: int = typer.Option(None, "--batch-size", help="Per-device micro-batch size."),
    grad_accum: int = typer.Option(None, "--grad-accum", help="Gradient accumulation steps."),
    max_length: int = typer.Option(None, "--max-length", help="Longest tokenised example."),
    length_policy: str = typer.Option(None, "--length-policy", help="truncate or drop examples over --max-length."),
    group_by_length: bool = typer.Option(None, "--group-by-length/--no-group-by-length", help="Batch similar lengths together."),
    save_steps: int = typer.Option(None, "--save-steps", help="Checkpoint every N steps (and at the end)."),
    seed: int = typer.Option(None, "--seed", help="Random seed (data order, init of LoRA weights)."),
    lora_r: int = typer.Option(None, "--lora-r", help="LoRA rank."),
    lora_alpha: int = typer.Option(None, "--lora-alpha", help="LoRA alpha."),
    lora_dropout: float = typer.Option(None, "--lora-dropout", help="LoRA dropout."),
    qlora: bool = typer.Option(False, "--qlora", help="4-bit QLoRA (needs CUDA and bitsandbytes)."),
    full: bool = typer.Option(False, "--full", help="Full fine-tuning instead of LoRA."),
    merge: bool = typer.Option(None, "--merge/--no-merge", help="Also write OUT/merged (adapter merged into the base)."),
    beta: float = typer.Option(None, "--beta", help="DPO beta."),
    precision: str = typer.Option(None, "--precision", help="auto, fp32, bf16 or fp16 (auto picks from the hardware)."),
    gradient_checkpointing: bool = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing",
                                                help="Recompute activations to save memory (slow on CPU)."),
    torch_compile: bool = typer.Option(None, "--torch-compile/--no-torch-compile",
                                       help="torch.compile the model (minutes of compilation; pays off on long runs)."),
    report_to: list[str] = typer.Option(None, "--report-to", help="Experiment tracker: tensorboard, mlflow or wandb "
                                        "(repeat, or comma-separate, for several; none for no tracker)."),
    no_memory_check: bool = typer.Option(False, "--no-memory-check", help="Start even when the memory estimate exceeds what is free."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Fine-tune a model with SFT (LoRA, QLoRA or full), DPO or GRPO; see `tunelens.train` for the outputs."""
    from tunelens.errors import ConfigError
    from tunelens.train.config import load_config
    from tunelens.train.run import train

    if full and qlora:
        raise ConfigError("--full and --qlora exclude each other")
    overrides = {
        "method": method, "model": model,
        "data": [str(p) for p in [*(data or []), *(prompts or [])]] or None,
        "grpo.num_generations": num_generations, "grpo.max_completion_length": max_completion_length,
        "output_dir": str(output_dir) if output_dir else None, "resume": resume or None,
        "max_steps": max_steps, "epochs": epochs, "learning_rate": lr, "batch_size": batch_size,
        "grad_accum": grad_accum, "max_length": max_length, "length_policy": length_policy,
        "group_by_length": group_by_length, "save_steps": save_steps, "seed": seed,
        "lora.r": lora_r, "lora.alpha": lora_alpha, "lora.dropout": lora_dropout,
        "peft": "none" if full else ("qlora" if qlora else None), "merge": merge, "beta": beta,
        "precision": precision, "gradient_checkpointing": gradient_checkpointing, "torch_compile": torch_compile,
        "memory_check": False if no_memory_check else None,
        "report_to": ",".join(report_to) if report_to else None,
    }
    cfg = load_config(config, overrides)
    if output_dir is None and config is None:
        raise ConfigError("give an output directory with -o/--output (or output_dir in --config)")
    result = train(cfg, progress=not quiet)
    if os.environ.get("RANK", "0") != "0":
        return  # under a distributed launcher only the main process reports
    console = Console(stderr=True)
    if result.interrupted:
        console.print(f"[yellow]stopped by signal at step {result.steps}; checkpoint saved. "
                      f"Continue with the same command plus --resume.[/]")
        raise typer.Exit(143)
    where = result.adapter_dir or result.model_dir
    if result.method == "grpo":
        import json

        summary = json.loads((result.output_dir / "train_summary.json").read_text(encoding="utf-8"))
        console.print(f"[green]done:[/] {result.steps} GRPO steps, mean reward {summary['reward_first_steps']} (first "
                      f"{summary['reward_window']} steps) -> {summary['reward_last_steps']} (last) -> "
                      f"{result.adapter_dir or result.model_dir}")
        return
    console.print(f"[green]done:[/] {result.steps} steps, final loss {result.final_loss}, "
                  f"{result.tokens_per_s} supervised tokens/s -> {where}"
                  + (f" (merged: {result.merged_dir})" if result.merged_dir else ""))


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root app."""
    app.command("train", help="Fine-tune a model: SFT (LoRA/QLoRA/full), DPO or GRPO, resumable.")(train_command)
