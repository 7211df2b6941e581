"""One LoRA training step on SmolLM2-135M, timed: eager fp32, bf16 autocast or torch.compile.

The same batch of 8 Alpaca examples (as benchmarks/train_throughput.py picks them), the
supervised-positions head, LoRA r=16 on all linear layers; one warm-up step (which includes the
compilation for ``compile``), then the median of 4 steps. Run a mode per process; to compare
allocators, run the same mode with and without ``LD_PRELOAD``:

    python benchmarks/train_step_micro.py eager
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 python benchmarks/train_step_micro.py eager
    python benchmarks/train_step_micro.py bf16
    python benchmarks/train_step_micro.py compile
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_throughput as tt  # noqa: E402  (same data and constants as the throughput benchmark)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("eager", "bf16", "compile"))
    ap.add_argument("--steps", type=int, default=4, help="timed steps after the warm-up")
    args = ap.parse_args()

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunelens.models import load_tokenizer, resolve_model
    from tunelens.train.masking import encode_for_sft
    from tunelens.train.trainer import SFTCollator, install_supervised_head

    path, _, _ = resolve_model("smollm2-135m", progress=False)
    tok = load_tokenizer(str(path))
    convs, _ = tt.alpaca_split(tt.BATCH)
    batch = SFTCollator(tok.pad_token_id)([encode_for_sft(tok, c, max_length=tt.MAX_LEN) for c in convs])
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    install_supervised_head(model)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear"))
    model.train()
    forward = torch.compile(model, dynamic=True) if args.mode == "compile" else model
    n_sup = int((batch["labels"][:, 1:] != -100).sum())

    def step() -> float:
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.mode == "bf16"):
            loss = forward(**batch, supervised_loss=True).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - t

    print(f"{args.mode}: first step (warm-up{', compilation' if args.mode == 'compile' else ''}) {step():.1f} s", flush=True)
    times = sorted(step() for _ in range(args.steps))
    median = times[len(times) // 2]
    print(f"{args.mode} batch {tuple(batch['input_ids'].shape)} LD_PRELOAD={os.environ.get('LD_PRELOAD', '') or '-'}: "
          f"median {median:.2f} s/step, {n_sup / median:.1f} supervised tok/s, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
