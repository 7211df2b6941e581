"""GRPO step time on a CPU: tunelens (``tunelens train --method grpo``) against TRL's GRPOTrainer
with its defaults, on the same model, prompts, group size, completion length and batch, and where a
step's time goes (generation, rewards, the rest: log-prob passes, loss, backward, optimizer).

Every variant runs in its own process (``--variant``); without it the script runs them one after
the other and prints the table. All variants use the same timing subclass of GRPOTrainer
(``tunelens.train.grpo.trainer_class``: it only measures) and the same reward (the suite checker)
on the first prompts of the builtin suite's train split. The first step is a warm-up; the figures
are medians over the timed steps.

    OMP_NUM_THREADS=1 python benchmarks/grpo_speed.py --steps 3     # all variants, SmolLM2-135M
    python benchmarks/grpo_speed.py --variant trl_defaults --steps 4

Variants:
  tunelens        train() with method grpo and its defaults (LoRA r16, fp32 on CPU, no gradient
                  checkpointing, kl_beta 0.04: one reference pass per step)
  tunelens_unmerged  the same generating through the unmerged LoRA adapter, as TRL does
                  (grpo.merged_generation: false)
  tunelens_fullhead  the same with TRL's LM head as it is on a CPU (every prompt and completion
                  position projected onto the vocabulary; tunelens projects the completion ones only)
  trl_defaults    GRPOTrainer + GRPOConfig defaults (bf16 autocast, gradient checkpointing, beta 0),
                  the same LoRA through peft_config
  trl_fp32        TRL defaults with bf16 and gradient checkpointing off
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("tunelens", "tunelens_unmerged", "tunelens_fullhead", "trl_defaults", "trl_fp32")


def prompts_file(tmp: Path, n: int) -> Path:
    from tunelens.records import write_jsonl
    from tunelens.suite import generate_suite

    # The safety family's checkers call the refusal instrument; left out so that the timing covers
    # the rule-based checkers only (the same for every variant).
    rows = [r for r in generate_suite(max(200, 3 * n), seed=0)["train"] if r["meta"]["family"] != "safety"][:n]
    path = tmp / "prompts.jsonl"
    write_jsonl(path, rows)
    return path


def run_tunelens(args, tmp: Path, prompts: Path, kl: float, compact_head: bool = True, merged: bool = True) -> list[dict]:
    from tunelens.train import TrainConfig, train
    from tunelens.train import grpo

    if not compact_head:
        original = grpo.trainer_class
        grpo.trainer_class = lambda compact_head=True: original(compact_head=False)

    out = tmp / "tunelens"
    cfg = TrainConfig(method="grpo", model=args.model, data=[str(prompts)], output_dir=str(out), max_steps=args.steps,
                      batch_size=args.batch_size, save_steps=10_000, max_length=512, memory_check=False,
                      grpo={"num_generations": args.generations, "max_completion_length": args.completion_length,
                            "kl_beta": kl, "merged_generation": merged, "rewards": [{"name": "suite"}]})
    train(cfg, progress=False)
    return [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]


def run_trl(args, tmp: Path, prompts: Path, fp32: bool) -> list[dict]:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig

    from tunelens.models import load_tokenizer, resolve_model
    from tunelens.train.grpo import prepare_prompts, trainer_class
    from tunelens.train.grpo_config import GrpoSettings
    from tunelens.train.rewards import Composed

    path, _, _ = resolve_model(args.model, progress=False)
    tok = load_tokenizer(str(path))
    specs = GrpoSettings.model_validate({"rewards": [{"name": "suite"}]}).rewards
    items = prepare_prompts(tok, [str(prompts)], specs, 512 - args.completion_length).items
    composed = Composed(specs, items)
    dataset = Dataset.from_list([{"prompt": it.messages, "item_index": i} for i, it in enumerate(items)])
    extra = {"bf16": False, "gradient_checkpointing": False} if fp32 else {}
    config = GRPOConfig(output_dir=str(tmp / "trl"), per_device_train_batch_size=args.batch_size,
                        num_generations=args.generations, max_completion_length=args.completion_length,
                        max_steps=args.steps, use_cpu=True, report_to=[], logging_steps=1, save_strategy="no",
                        disable_tqdm=True, **extra)
    rows: list[dict] = []

    class Keep(TrainerCallback):
        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                rows.append({"step": state.global_step, "generate_s": logs.get("tl/generate_s"),
                             "reward_s": logs.get("tl/reward_s"), "train_s": logs.get("tl/train_s"),
                             "generate_tokens": logs.get("tl/generate_tokens"),
                             "generate_tokens_per_s": logs.get("tl/generate_tokens_per_s"),
                             "train_tokens_per_s": logs.get("tl/train_tokens_per_s"), "reward": logs.get("reward")})

    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
    # TRL as it is: every position through the LM head (compact_head=False); only the timing is added.
    trainer = trainer_class(compact_head=False)(model=str(path), reward_funcs=composed.functions(), args=config, train_dataset=dataset,
                              processing_class=tok, peft_config=lora, callbacks=[Keep()])
    trainer.train()
    return rows


def one(args) -> dict:
    import torch

    tmp = Path(tempfile.mkdtemp(prefix="grpo_speed_"))
    prompts = prompts_file(tmp, args.prompts)
    started = time.perf_counter()
    if args.variant.startswith("tunelens"):
        rows = run_tunelens(args, tmp, prompts, kl=0.04, compact_head=args.variant != "tunelens_fullhead",
                            merged=args.variant != "tunelens_unmerged")
    else:
        rows = run_trl(args, tmp, prompts, fp32=args.variant == "trl_fp32")
    timed = rows[1:] or rows
    med = (lambda key: round(statistics.median(r[key] for r in timed if r.get(key) is not None), 3)
           if any(r.get(key) is not None for r in timed) else None)
    step = [r["generate_s"] + r["reward_s"] + r["train_s"] for r in timed]
    return {"variant": args.variant, "model": args.model, "steps": len(rows), "timed_steps": len(timed),
            "step_s": round(statistics.median(step), 3), "generate_s": med("generate_s"), "reward_s": med("reward_s"),
            "train_s": med("train_s"), "generate_tokens_per_s": med("generate_tokens_per_s"),
            "train_tokens_per_s": med("train_tokens_per_s"), "wall_s": round(time.perf_counter() - started, 1),
            "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", choices=VARIANTS)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=4, help="optimizer steps; the first is a warm-up")
    ap.add_argument("--batch-size", type=int, default=8, help="completions per step (prompts x generations)")
    ap.add_argument("--generations", type=int, default=4)
    ap.add_argument("--completion-length", type=int, default=32)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=1, help="run the variants this many times, interleaved; "
                    "the table gives medians over the rounds (min-max in brackets)")
    ap.add_argument("--out", type=Path, help="append each variant's JSON result to this file")
    args = ap.parse_args()
    if args.variant:
        result = one(args)
        print(json.dumps(result), flush=True)
        if args.out:
            with args.out.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(result) + "\n")
        return
    results: list[dict] = []
    for round_ in range(args.rounds):
        for variant in args.variants.split(","):
            cmd = [sys.executable, __file__, "--variant", variant, "--model", args.model, "--steps", str(args.steps),
                   "--batch-size", str(args.batch_size), "--generations", str(args.generations),
                   "--completion-length", str(args.completion_length), "--prompts", str(args.prompts)]
            if args.out:
                cmd += ["--out", str(args.out)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TOKENIZERS_PARALLELISM="false"))
            if proc.returncode != 0 or not proc.stdout.strip():
                print(f"{variant}: {'failed' if proc.returncode else 'no result'}\n{proc.stderr[-3000:]}", file=sys.stderr)
                continue
            results.append({**json.loads(proc.stdout.strip().splitlines()[-1]), "round": round_ + 1})
            print(json.dumps(results[-1]), flush=True)

    def agg(variant: str, key: str) -> tuple[float, float, float] | None:
        vals = [r[key] for r in results if r["variant"] == variant and r.get(key) is not None]
        return (statistics.median(vals), min(vals), max(vals)) if vals else None

    def cell(v: tuple[float, float, float] | None) -> str:
        if v is None:
            return "-"
        return f"{v[0]:.2f}" + (f" [{v[1]:.2f}-{v[2]:.2f}]" if args.rounds > 1 else "")

    base = agg("tunelens", "step_s")
    print(f"\n{args.rounds} round(s); medians over rounds [min-max]")
    print("| variant | step s | generate s | reward s | train s | gen tok/s | train tok/s | variant / tunelens step |")
    print("|---|---|---|---|---|---|---|---|")
    for variant in dict.fromkeys(r["variant"] for r in results):
        step = agg(variant, "step_s")
        ratio = f"{step[0] / base[0]:.2f}x" if base and step else "-"
        print(f"| {variant} | {cell(step)} | {cell(agg(variant, 'generate_s'))} | {cell(agg(variant, 'reward_s'))} | "
              f"{cell(agg(variant, 'train_s'))} | {cell(agg(variant, 'generate_tokens_per_s'))} | "
              f"{cell(agg(variant, 'train_tokens_per_s'))} | {ratio} |")


if __name__ == "__main__":
    main()
