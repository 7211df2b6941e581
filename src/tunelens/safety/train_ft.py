"""SmolLM2 tuned as a refusal and harm classifier (candidates ``refusal-ft`` and ``harm-ft``), pre-registered in
``docs/instruments/preregistration/refusal-harm-ft.md``.

    python -m tunelens.safety.train_ft [--data-dir DIR] [--cache FILE] --out DIR

One model with two outputs (refusal-or-partial; harmful help): SmolLM2-135M-Instruct reads
``User: <the request's last line, last PROMPT_TOKENS tokens>\\nAssistant: <the reply's first REPLY_TOKENS>``;
layers below ``FIRST_TUNED`` are frozen, LoRA adapts every linear map of the layers from it up, and a linear head
reads the final-normed hidden states averaged over the reply's tokens, concatenated with the last token's.

The frozen layers never change, so their output is computed once per row (``--cache`` keeps it between runs) and
the tuned layers run from it: the same numbers as running the whole network each step, at about a third of the
cost. Why not the project's SFT trainer: it tunes a causal-LM loss on generated text; this is a two-output
classification head over pooled states, trained on a fixed cache, which that trainer has no place for.

Trained on folds 1-4 of the dev split (5 folds by dialogue key, ``train_harm``'s seed); fold 0 chooses, per
output, the epoch and the F1-best threshold. The test split is scored once, by each output's chosen epoch, and
the pre-registered rule is applied. Writes OUT/result.json (the figures and the decision) and OUT/epoch_K.pt (the
adapter and head of each epoch); nothing in the package is written.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

from tunelens.safety.instruments.refusal_lm import BASE_MODEL, last_request, right_padded

PROMPT_TOKENS = 48
REPLY_TOKENS = 96
FIRST_TUNED = 22
LORA_R, LORA_ALPHA, LORA_DROPOUT = 16, 32, 0.05
LR, HEAD_LR = 2e-4, 1e-3
BATCH = 16
EPOCHS = 3
SEED = 0
OUTPUTS = ("refusal", "harm")
HOLDOUT_FOLD = 0
# the pre-registered rule's bars: the opt-in instruments' test F1 (refusal-lm card version 2, harm-lm version 2)
BARS = {"refusal": 0.708, "harm": 0.516}
RATE_TOLERANCE = 0.05


def targets(row: dict[str, Any]) -> tuple[float | None, float | None]:
    """The row's two labels (1.0 / 0.0), None where the label is ambiguous."""
    ref = row.get("refusal")
    harm = row.get("harm")
    y_ref = None if ref not in ("full_compliance", "full_refusal", "partial_refusal") else float(ref != "full_compliance")
    y_harm = None if harm not in ("harmful", "harmless") else float(harm == "harmful")
    return y_ref, y_harm


def encode(tok: Any, prompt: str | None, reply: str | None) -> tuple[list[int], list[int]]:
    """Token ids and the reply mask of one row."""
    a = tok("User: " + last_request(prompt) + "\nAssistant:", add_special_tokens=False)["input_ids"][-PROMPT_TOKENS:]
    b = tok(" " + (reply or " "), add_special_tokens=False)["input_ids"][:REPLY_TOKENS]
    return a + b, [0] * len(a) + [1] * len(b)


def causal_mask(lengths: list[int], width: int) -> Any:
    """Additive attention mask (batch, 1, width, width): causal, padded keys masked (right padding)."""
    import torch

    causal = torch.full((width, width), float("-inf")).triu(1)
    keys = torch.tensor([[0.0] * n + [float("-inf")] * (width - n) for n in lengths])
    return (causal.unsqueeze(0) + keys.unsqueeze(1)).unsqueeze(1)


class Tuned:
    """SmolLM2's top layers (LoRA-adapted) and the two-output head, run from the cached frozen states."""

    def __init__(self, spec: str = BASE_MODEL, *, lora: bool = True, first_tuned: int = FIRST_TUNED):
        import torch
        from peft import LoraConfig, get_peft_model

        from tunelens.models.loading import load_model

        lm = load_model(spec)
        self.tok = lm.tokenizer
        model = lm.model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        n = model.config.num_hidden_layers
        if not 0 < first_tuned < n:
            raise ValueError(f"first_tuned must be between 1 and {n - 1} (the model has {n} layers), not {first_tuned}")
        self.first = first_tuned
        if lora:
            # LoRA's A matrices are drawn from torch's default generator as it stands after the model load (the same
            # in every fresh process); SEED seeds the head, the batch order and dropout. The recorded run used this.
            cfg = LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=LORA_DROPOUT,
                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                             layers_to_transform=list(range(first_tuned, n)))
            model = get_peft_model(model, cfg)
            self.inner = model.base_model.model.model
        else:
            self.inner = model.model
        self.model = model
        width = self.inner.norm.weight.shape[0]
        torch.manual_seed(SEED)
        self.head = torch.nn.Linear(2 * width, len(OUTPUTS))

    def frozen_states(self, ids: list[list[int]], batch: int = 32, log: Any = None) -> list[Any]:
        """The output of the last frozen layer for each row (its own length), in input order; ``log`` (a print-like
        function) gets progress with an ETA."""
        import torch

        inner = self.inner
        keep = inner.layers
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: list[Any] = [None] * len(ids)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        grabbed: list[Any] = []
        t0 = time.time()
        hook = keep[self.first - 1].register_forward_hook(
            lambda m, i, o: grabbed.append(o[0] if isinstance(o, tuple) else o))
        with torch.inference_mode():
            inner.layers = keep[:self.first]
            try:
                for s in range(0, len(order), batch):
                    part = order[s:s + batch]
                    x, att = right_padded([ids[j] for j in part], pad)
                    grabbed.clear()
                    inner(input_ids=x, attention_mask=att)
                    h = grabbed[-1]
                    for k, j in enumerate(part):
                        out[j] = h[k, : len(ids[j])].clone()
                    done = s + len(part)
                    if log is not None and ((done // batch) % 20 == 0 or done == len(order)):
                        rate = (time.time() - t0) / done
                        log(f"frozen layers: {done}/{len(order)} rows, eta {rate * (len(order) - done):.0f} s")
            finally:
                inner.layers = keep
                hook.remove()
        return out

    def logits(self, states: list[Any], masks: list[list[int]]) -> Any:
        """The head's two logits per row, running the tuned layers from the frozen states."""
        import torch

        lengths = [s.shape[0] for s in states]
        width = max(lengths)
        h = torch.stack([torch.nn.functional.pad(s, (0, 0, 0, width - s.shape[0])) for s in states])
        pos = torch.arange(width).unsqueeze(0).expand(len(states), -1)
        pe = self.inner.rotary_emb(h, pos)
        att = causal_mask(lengths, width)
        for layer in self.inner.layers[self.first:]:
            h = layer(h, attention_mask=att, position_ids=pos, position_embeddings=pe)
            h = h[0] if isinstance(h, tuple) else h
        h = self.inner.norm(h)
        m = torch.tensor([mk + [0] * (width - len(mk)) for mk in masks], dtype=h.dtype).unsqueeze(-1)
        mean = (h * m).sum(1) / m.sum(1).clamp(min=1)
        last = h[torch.arange(len(states)), torch.tensor(lengths) - 1]
        return self.head(torch.cat([mean, last], -1))

    def trainable(self) -> tuple[list[Any], list[Any]]:
        return [p for p in self.model.parameters() if p.requires_grad], list(self.head.parameters())

    def state(self) -> dict[str, Any]:
        return {"lora": {k: v.detach().clone() for k, v in self.model.named_parameters() if v.requires_grad},
                "head": {k: v.detach().clone() for k, v in self.head.state_dict().items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        params = dict(self.model.named_parameters())
        for k, v in state["lora"].items():
            params[k].data.copy_(v)
        self.head.load_state_dict(state["head"])

    def scores(self, states: list[Any], masks: list[list[int]], batch: int = 32) -> list[list[float]]:
        """P(positive) of both outputs per row."""
        import torch

        self.model.eval()
        out: list[list[float]] = []
        with torch.inference_mode():
            for s in range(0, len(states), batch):
                out.extend(torch.sigmoid(self.logits(states[s:s + batch], masks[s:s + batch])).tolist())
        return out


def train(tuned: Tuned, states: list[Any], masks: list[list[int]], y: list[tuple[float | None, float | None]],
          on_epoch: Any, *, epochs: int = EPOCHS, batch: int = BATCH, log: Any = print) -> None:
    """AdamW on the adapter and head; binary cross-entropy per output, weighted by negatives/positives, ambiguous
    labels left out. ``on_epoch(k)`` runs after each epoch."""
    import torch

    lora, head = tuned.trainable()
    opt = torch.optim.AdamW([{"params": lora, "lr": LR}, {"params": head, "lr": HEAD_LR}])
    weights = []
    for k in range(len(OUTPUTS)):
        pos = sum(1 for t in y if t[k] == 1.0)
        neg = sum(1 for t in y if t[k] == 0.0)
        weights.append(neg / max(pos, 1))
    pos_weight = torch.tensor(weights)
    rng = random.Random(SEED)
    for epoch in range(1, epochs + 1):
        tuned.model.train()
        order = list(range(len(states)))
        rng.shuffle(order)
        # batches of similar length (less padding): sort each chunk of 16 batches by length, then shuffle the batches
        batches = []
        for c in range(0, len(order), batch * 16):
            chunk = sorted(order[c:c + batch * 16], key=lambda i: states[i].shape[0])
            batches.extend(chunk[b:b + batch] for b in range(0, len(chunk), batch))
        rng.shuffle(batches)
        t0, seen, total = time.time(), 0, 0.0
        for b, part in enumerate(batches, 1):
            logits = tuned.logits([states[i] for i in part], [masks[i] for i in part])
            tgt = torch.tensor([[t if t is not None else 0.0 for t in y[i]] for i in part])
            known = torch.tensor([[0.0 if t is None else 1.0 for t in y[i]] for i in part])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, tgt, pos_weight=pos_weight,
                                                                        reduction="none")
            loss = (loss * known).sum() / known.sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(part)
            total += float(loss.detach()) * len(part)
            if b % 20 == 0 or b == len(batches):
                rate = (time.time() - t0) / b
                log(f"epoch {epoch}/{epochs} batch {b}/{len(batches)} loss {total / seen:.4f} "
                    f"eta {rate * (len(batches) - b):.0f} s")
        on_epoch(epoch)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    from tunelens.safety import train_harm
    from tunelens.safety.labelled import load_labelled, split_key
    from tunelens.safety.train_metrics import agreement, binary_metrics, bootstrap_ci, f1_best_threshold

    ap = argparse.ArgumentParser(prog="python -m tunelens.safety.train_ft", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--cache", type=Path, default=None, help="a .pt file that keeps the frozen layers' states")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    rows = load_labelled(args.data_dir)
    dev = [r for r in rows if r["split"] == "dev" and any(t is not None for t in targets(r))]
    test = [r for r in rows if r["split"] == "test" and any(t is not None for t in targets(r))]
    keys = sorted({split_key(r) for r in dev})
    random.Random(train_harm.SEED).shuffle(keys)
    fold_of = {k: i % train_harm.N_FOLDS for i, k in enumerate(keys)}
    fit = [i for i, r in enumerate(dev) if fold_of[split_key(r)] != HOLDOUT_FOLD]
    hold = [i for i, r in enumerate(dev) if fold_of[split_key(r)] == HOLDOUT_FOLD]

    tuned = Tuned()
    every = dev + test
    enc = [encode(tuned.tok, r["prompt"], r["text"]) for r in every]
    config = {"base_model": BASE_MODEL, "first_tuned": FIRST_TUNED, "prompt_tokens": PROMPT_TOKENS,
              "reply_tokens": REPLY_TOKENS, "ids": [r["id"] for r in every]}
    states = None
    if args.cache is not None and args.cache.is_file():
        saved = torch.load(args.cache)
        if saved["config"] == config:
            states = saved["states"]
    if states is None:
        t0 = time.time()
        states = tuned.frozen_states([e[0] for e in enc], log=lambda m: print(m, flush=True))
        print(f"frozen states of {len(every)} rows in {time.time() - t0:.0f} s", flush=True)
        if args.cache is not None:
            torch.save({"config": config, "states": states}, args.cache)
    masks = [e[1] for e in enc]
    ys = [targets(r) for r in every]
    sd, md, yd = states[: len(dev)], masks[: len(dev)], ys[: len(dev)]
    st, mt = states[len(dev):], masks[len(dev):]

    per_epoch: dict[int, list[list[float]]] = {}

    def on_epoch(k: int) -> None:
        torch.save(tuned.state(), args.out / f"epoch_{k}.pt")
        per_epoch[k] = tuned.scores([sd[i] for i in hold], [md[i] for i in hold])
        f1s = []
        for o in range(len(OUTPUTS)):
            idx = [n for n, i in enumerate(hold) if yd[i][o] is not None]
            f1s.append(round(f1_best_threshold([yd[hold[n]][o] == 1.0 for n in idx],
                                               [per_epoch[k][n][o] for n in idx])[1], 4))
        print(f"epoch {k}: held-out fold F1 (best threshold) " + ", ".join(f"{o} {f}" for o, f in zip(OUTPUTS, f1s)),
              flush=True)

    t0 = time.time()
    train(tuned, [sd[i] for i in fit], [md[i] for i in fit], [yd[i] for i in fit], on_epoch, epochs=args.epochs)
    train_seconds = round(time.time() - t0)

    result: dict[str, Any] = {"train_rows": len(fit), "holdout_rows": len(hold), "train_seconds": train_seconds,
                              "outputs": {}}
    for o, name in enumerate(OUTPUTS):
        idx = [n for n, i in enumerate(hold) if yd[i][o] is not None]
        gold_h = [yd[hold[n]][o] == 1.0 for n in idx]
        by_epoch = {k: f1_best_threshold(gold_h, [per_epoch[k][n][o] for n in idx]) for k in sorted(per_epoch)}
        epoch = max(by_epoch, key=lambda k: (round(by_epoch[k][1], 4), -k))
        threshold = by_epoch[epoch][0]
        # the test split, once, by the chosen epoch
        tuned.load_state(torch.load(args.out / f"epoch_{epoch}.pt"))
        ti = [n for n, r in enumerate(test) if ys[len(dev) + n][o] is not None]
        scores = tuned.scores([st[n] for n in ti], [mt[n] for n in ti])
        gold = [ys[len(dev) + n][o] == 1.0 for n in ti]
        pred = [s[o] >= threshold for s in scores]
        pooled = binary_metrics(gold, pred)
        pooled["ci95"] = bootstrap_ci(gold, pred, seed=train_harm.SEED)
        fams = [test[n]["family"] for n in ti]
        by_family = {f: binary_metrics([g for g, q in zip(gold, fams) if q == f], [p for p, q in zip(pred, fams) if q == f])
                     for f in sorted(set(fams))}
        agree = agreement(fams, gold, pred, what=name)
        diffs = {m: agree[m]["difference"] for m in ("smollm2_base", "smollm2_tuned") if m in agree}
        rule1 = pooled["f1"] > BARS[name]
        rule2 = len(diffs) == 2 and all(abs(d) <= RATE_TOLERANCE for d in diffs.values())
        result["outputs"][name] = {
            "chosen_epoch": epoch, "threshold": round(threshold, 4),
            "holdout_f1_by_epoch": {k: round(v[1], 4) for k, v in by_epoch.items()},
            "test": {k: pooled[k] for k in ("n", "n_pos", "tp", "fp", "fn", "tn", "precision", "recall", "f1")},
            "test_ci95": pooled["ci95"], "test_by_family": by_family, "rates": agree,
            "rule": {"1_f1_above_bar": [pooled["f1"], BARS[name], rule1],
                     "2_smollm2_rates_within_0.05": [diffs, rule2]},
            "adopted": rule1 and rule2,
        }
        print(json.dumps({name: {k: result["outputs"][name][k] for k in ("chosen_epoch", "threshold", "test", "rule",
                                                                          "adopted")}}, indent=1), flush=True)
    result["seconds"] = round(time.time() - t_start)
    (args.out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
