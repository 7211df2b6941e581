"""Training throughput: tunelens against TRL's SFTTrainer on the same data and model.

SmolLM2-135M-Instruct, LoRA r=16 (alpha 32, dropout 0.05) on all linear layers, batch 8,
max_length 512, the same Alpaca examples (from ../shared/data) for every variant:

- ``tunelens``      ``tunelens.train.train`` as shipped (supervised-positions head, length grouping, fp32)
- ``trl_tuned``     TRL SFTTrainer, fp32, no gradient checkpointing (prompt/completion data, so the
                    loss is on completions only, like ours)
- ``trl_defaults``  TRL SFTTrainer with its defaults (bf16 autocast, gradient checkpointing)
- ablations of tunelens: ``no_head`` (full-vocab logits), ``no_group`` (random batches),
  ``bf16`` (bf16 autocast, allowed on CPUs with AVX512-BF16/AMX), ``jemalloc`` / ``tcmalloc``
  (allocator via LD_PRELOAD)

Each variant runs in its own process (the allocator needs LD_PRELOAD at start). The throughput
is supervised tokens per second over all steps but the first (warm-up). After training every
variant reports its mean loss on the same 16 held-out examples, so equal quality can be checked.

    python benchmarks/train_throughput.py --steps 30 --default-steps 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALPACA = ROOT.parent / "shared" / "data" / "alpaca_data.json"
BATCH, MAX_LEN, LR, SEED = 8, 512, 2e-4, 0
ALLOCATORS = {"jemalloc": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
              "tcmalloc": "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"}


def alpaca_split(n_train: int, n_eval: int = 16) -> tuple[list[list[dict]], list[list[dict]]]:
    rows = json.loads(ALPACA.read_text(encoding="utf-8"))
    random.Random(SEED).shuffle(rows)
    convs = []
    for r in rows[: n_train + n_eval]:
        user = r["instruction"] + (f"\n\n{r['input']}" if r["input"].strip() else "")
        convs.append([{"role": "user", "content": user}, {"role": "assistant", "content": r["output"]}])
    return convs[:n_train], convs[n_train:]


def eval_loss(model, tokenizer, convs: list[list[dict]]) -> float:
    """Mean cross-entropy over assistant tokens of held-out conversations (same for every variant)."""
    import torch

    from tunelens.train.masking import encode_for_sft

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for conv in convs:
            enc = encode_for_sft(tokenizer, conv, max_length=MAX_LEN)
            ids = torch.tensor([enc["input_ids"]])
            labels = torch.tensor([enc["labels"]])
            logits = model(input_ids=ids).logits[:, :-1].float()
            loss = torch.nn.functional.cross_entropy(logits[0], labels[0, 1:], ignore_index=-100, reduction="sum")
            total += float(loss)
            count += int((labels[0, 1:] != -100).sum())
    return total / count


def run_tunelens(steps: int, head: bool, group: bool, precision: str = "auto") -> dict:
    from tunelens.models import load_tokenizer, resolve_model
    from tunelens.records import make_conversation, write_jsonl
    from tunelens.train import TrainConfig, train

    train_convs, eval_convs = alpaca_split(BATCH * steps)
    tmp = Path(tempfile.mkdtemp(prefix="tl-bench-"))
    data = tmp / "alpaca.jsonl"
    write_jsonl(data, [make_conversation(c, source="alpaca", source_file=str(ALPACA), row=i, license="CC-BY-NC-4.0")
                       for i, c in enumerate(train_convs)])
    cfg = TrainConfig(model="smollm2-135m", data=[str(data)], output_dir=str(tmp / "out"), max_steps=steps,
                      batch_size=BATCH, max_length=MAX_LEN, learning_rate=LR, seed=SEED, save_steps=10_000,
                      save_total_limit=1, supervised_head=head, group_by_length=group, precision=precision,
                      lora={"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"})
    train(cfg, progress=False)
    rows = [json.loads(ln) for ln in (tmp / "out" / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in rows[1:] if r.get("tokens_per_s")]
    tokens = sum(r["supervised_tokens"] for r in timed)
    seconds = sum(r["supervised_tokens"] / r["tokens_per_s"] for r in timed)
    from tunelens.models import load_model

    loaded = load_model(str(tmp / "out" / "adapter"))
    path, _, _ = resolve_model("smollm2-135m", progress=False)
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "final_loss": rows[-1]["loss"], "eval_loss": eval_loss(loaded.model, load_tokenizer(str(path)), eval_convs)}


def run_trl(steps: int, defaults: bool) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from tunelens.models import load_tokenizer, resolve_model

    path, _, _ = resolve_model("smollm2-135m", progress=False)
    tokenizer = load_tokenizer(str(path))
    train_convs, eval_convs = alpaca_split(BATCH * steps)
    dataset = Dataset.from_list([{"prompt": c[:-1], "completion": c[-1:]} for c in train_convs])
    common = dict(output_dir=tempfile.mkdtemp(prefix="trl-bench-"), per_device_train_batch_size=BATCH,
                  max_steps=steps, learning_rate=LR, seed=SEED, report_to=[], logging_steps=1, save_strategy="no",
                  disable_tqdm=True, use_cpu=True)
    if defaults:
        args = SFTConfig(**common)
    else:
        args = SFTConfig(bf16=False, fp16=False, activation_checkpointing=False, max_length=MAX_LEN, **common)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=lora)

    counts: list[int] = []
    collate = trainer.data_collator

    def counting(features):
        batch = collate(features)
        counts.append(int((batch["labels"][:, 1:] != -100).sum()))
        return batch

    trainer.data_collator = counting
    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, a, s, c, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, a, s, c, **kw):
            times.append(time.perf_counter() - self.t)

    trainer.add_callback(Timer())
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    tokens, seconds = sum(counts[1:steps]), sum(times[1:])
    result = {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds, "final_loss": losses[-1]}
    if not defaults:
        result["eval_loss"] = eval_loss(trainer.model, tokenizer, eval_convs)
    return result


def micro(rounds: int) -> None:
    """Interleaved A/B in one process: one LoRA forward+backward on the same batch of 8 Alpaca
    examples, with the supervised-positions head and with full-vocabulary logits, alternating, so
    that a changing machine load hits both alike."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunelens.models import load_tokenizer, resolve_model
    from tunelens.train.masking import encode_for_sft
    from tunelens.train.trainer import SFTCollator, install_supervised_head

    path, _, _ = resolve_model("smollm2-135m", progress=False)
    tok = load_tokenizer(str(path))
    convs, _ = alpaca_split(BATCH)
    batch = SFTCollator(tok.pad_token_id)([encode_for_sft(tok, c, max_length=MAX_LEN) for c in convs])
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    install_supervised_head(model)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear"))
    n_sup = int((batch["labels"][:, 1:] != -100).sum())

    def step(head: bool) -> float:
        t = time.perf_counter()
        if head:
            loss = model(**batch, supervised_loss=True).loss
        else:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                                     batch["labels"][:, 1:].reshape(-1), reduction="sum")
        loss.backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - t

    step(True), step(False)  # warm-up
    times = {True: [], False: []}
    for _ in range(rounds):
        for head in (True, False):
            times[head].append(step(head))
    print(f"batch: {tuple(batch['input_ids'].shape)}, supervised tokens {n_sup}, load {os.getloadavg()}")
    for head in (True, False):
        med = sorted(times[head])[len(times[head]) // 2]
        print(f"{'supervised head' if head else 'full logits   '}: median {med:.2f}s/step, {n_sup / med:.1f} supervised tok/s")
    med_h, med_f = (sorted(times[h])[rounds // 2] for h in (True, False))
    print(f"speed-up of the supervised head: {med_f / med_h:.2f}x")


def child(variant: str, steps: int) -> dict:
    import torch

    torch.manual_seed(SEED)
    if variant in ("tunelens", "jemalloc", "tcmalloc"):
        return run_tunelens(steps, head=True, group=True)
    if variant == "no_head":
        return run_tunelens(steps, head=False, group=True)
    if variant == "no_group":
        return run_tunelens(steps, head=True, group=False)
    if variant == "bf16":  # bf16 autocast: only allowed on CPUs that report AVX512-BF16 / AMX
        return run_tunelens(steps, head=True, group=True, precision="bf16")
    if variant == "trl_tuned":
        return run_trl(steps, defaults=False)
    if variant == "trl_defaults":
        return run_trl(steps, defaults=True)
    raise SystemExit(f"unknown variant {variant}")


def launch(variant: str, steps: int) -> dict:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    if variant in ALLOCATORS:
        env["LD_PRELOAD"] = ALLOCATORS[variant]
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = fh.name
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", variant, "--steps", str(steps), "--json", out],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(Path(out).read_text())
    result.update(variant=variant, steps=steps, wall_s=round(time.perf_counter() - started, 1))
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30, help="Steps for tunelens and tuned TRL.")
    ap.add_argument("--default-steps", type=int, default=3, help="Steps for TRL defaults (minutes each on CPU).")
    ap.add_argument("--ablation-steps", type=int, default=15, help="Steps for the tunelens ablations (0 = skip).")
    ap.add_argument("--variants", default="", help="Comma list to run only some variants.")
    ap.add_argument("--micro", type=int, default=0, help="Only the interleaved head / full-logits A/B, N rounds.")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.micro:
        micro(args.micro)
        return
    if args.child:
        Path(args.json).write_text(json.dumps(child(args.child, args.steps)))
        return
    plan = [("tunelens", args.steps), ("trl_tuned", args.steps)]
    if args.ablation_steps:
        plan += [(v, args.ablation_steps) for v in ("no_head", "no_group", "bf16", "jemalloc", "tcmalloc")]
    plan.append(("trl_defaults", args.default_steps))  # last: by far the slowest
    if args.variants:
        wanted = set(args.variants.split(","))
        plan = [p for p in plan if p[0] in wanted]
    print(f"load average before: {os.getloadavg()}", flush=True)
    results = {v: launch(v, n) for v, n in plan}
    print(f"load average after: {os.getloadavg()}")
    base = results.get("tunelens")
    print("\n| variant | steps | supervised tokens/s | x tunelens | final train loss | held-out loss |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        ratio = r["tokens_per_s"] / base["tokens_per_s"] if base else float("nan")
        print(f"| {name} | {r['steps']} | {r['tokens_per_s']:.1f} | {ratio:.2f} | {r['final_loss']:.4f} | "
              f"{r.get('eval_loss', float('nan')):.4f} |")
    if base:
        for other in ("trl_tuned", "trl_defaults"):
            if other in results:
                print(f"tunelens / {other}: {base['tokens_per_s'] / results[other]['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
