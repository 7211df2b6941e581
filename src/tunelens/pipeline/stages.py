"""The five stages of ``tunelens run``. Each returns a short summary and declares what its hash covers.

A stage's config is built once per run and handed to both its hash (``*_payload``) and its run
(``run_*``): the curate and train settings are the run config's own validated sections, the
TrainConfig and EvalConfig are built once on the Context (``Context.train_config``/``eval_config``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from tunelens.config_files import validate
from tunelens.errors import TunelensError
from tunelens.pipeline.config import RunConfig, rl_config, train_config
from tunelens.pipeline.state import path_digest


@dataclass
class Context:
    config: RunConfig
    dir: Path
    progress: bool
    console: Console
    resume_training: bool = False
    _built: dict[str, Any] = field(default_factory=dict, repr=False)  # stage configs, built once per run

    def sub(self, name: str) -> Path:
        return self.dir / name

    def train_config(self):
        """The run's TrainConfig (resume off: the run sets it per attempt), built on first use."""
        if "train" not in self._built:
            self._built["train"] = train_config(self.config, [str(self.sub("curate") / "curated.jsonl")], self.sub("train"))
        return self._built["train"]

    def eval_config(self):
        """The run's EvalConfig, built on first use (after training: it names the tuned model)."""
        if "evaluate" not in self._built:
            self._built["evaluate"] = eval_config(self)
        return self._built["evaluate"]


# --- curate ----------------------------------------------------------------------------------

def curate_inputs(ctx: Context) -> list[str]:
    missing = [p for p in ctx.config.data.inputs if not p.startswith("hf:") and not Path(p).exists()]
    if missing:
        raise TunelensError(f"data.inputs: file(s) not found: {', '.join(missing)}")
    return list(ctx.config.data.inputs)


def curate_payload(ctx: Context) -> dict[str, Any]:
    c = ctx.config  # c.data.curate is the CurateConfig the stage runs with (licence and policy included)
    return {"suite": c.suite.model_dump(), "data": c.data.model_dump(),
            "inputs": {p: path_digest(p) for p in curate_inputs(ctx)}}


def run_curate(ctx: Context) -> dict[str, Any]:
    from tunelens.data.curate import curate

    c = ctx.config
    inputs: list[Any] = []
    if c.suite.enabled:
        from tunelens.suite import write_suite

        summary = write_suite(ctx.sub("suite"), c.suite.n, c.suite.seed)
        ctx.console.print(f"  built-in suite: {summary['counts']} -> {ctx.sub('suite')}")
        inputs.append(_suite_train_file(ctx))
    mix = None
    if any(n > 0 for n in c.data.mix.values()):
        from tunelens.data.mixes import build_mix

        mix = build_mix(c.data.mix, ctx.sub("mix"), seed=c.seed)
        taken = ", ".join(f"{k} {v['taken']}" for k, v in mix["components"].items())
        dropped = sum(v["excluded_as_contaminated"] for v in mix["components"].values())
        ctx.console.print(f"  training mix: {taken}; {dropped} left out as overlapping an evaluation set "
                          f"(each with its reason in {ctx.sub('mix') / 'excluded.jsonl'})")
        inputs.append(str(ctx.sub("mix") / "mix.jsonl"))
    inputs += curate_inputs(ctx)
    if not inputs:
        raise TunelensError("nothing to curate: enable suite or list data.inputs in the run config")
    out = ctx.sub("curate")
    if out.exists():
        shutil.rmtree(out)
    report = curate(inputs, out, c.data.curate, progress=ctx.progress)
    ctx.console.print(f"  curated: {report.kept} kept, {report.rejected} rejected, {report.changed} changed -> {out}")
    if mix is not None or c.suite.exclude_families:
        _datasheet_training_data(out / "datasheet.md", mix, ctx)
    if report.kept == 0:
        reasons = _reject_reasons(out / "rejects.jsonl")
        raise TunelensError(
            f"curation kept no records out of {report.records_in} (rejected: {reasons}); "
            f"nothing to train on. Every reason is in {out / 'rejects.jsonl'}")
    return {"records_in": report.records_in, "kept": report.kept, "rejected": report.rejected, "changed": report.changed}


def _datasheet_training_data(path: Path, mix: dict[str, Any] | None, ctx: Context) -> None:
    """Add to the datasheet how the run chose its training data: the suite families left out, and the
    real-data mix with its decontamination against the evaluation sets (the curate step's own
    decontamination section covers only ``data.curate.decontaminate``)."""
    if not path.is_file():
        return
    from tunelens.records import iter_jsonl

    lines = ["## Training data chosen by the run", ""]
    fams = ctx.config.suite.exclude_families
    if fams and ctx.config.suite.enabled:
        left = ctx.sub("suite") / "excluded_train.jsonl"
        n = sum(1 for _ in iter_jsonl(left)) if left.is_file() else 0
        lines += [f"Suite families left out of training (`suite.exclude_families`): {', '.join(fams)}; {n} train "
                  f"records, listed in `suite/excluded_train.jsonl` (their test and held-out items are still evaluated).", ""]
    if mix is not None:
        d = mix["decontamination"]
        lines += [f"Real-data mix (`data.mix`, seed {mix['seed']}), decontaminated before curation: a candidate is "
                  f"left out when it overlaps ({d['rule']}) any prompt of the evaluation sets "
                  f"{', '.join(f'`{e}`' for e in d['eval_sets'])} (present in the data folder). Every candidate left "
                  "out is in `mix/excluded.jsonl` with the evaluation item it overlaps.", "",
                  "| component | source file | licence | asked | taken | candidates checked | left out as contaminated |",
                  "|---|---|---|---|---|---|---|"]
        for name, comp in mix["components"].items():
            lines.append(f"| {name} | `{comp['file']}` | {comp['license']} | {comp['asked']} | {comp['taken']} | "
                         f"{comp['checked']} | {comp['excluded_as_contaminated']} |")
        excluded = list(iter_jsonl(ctx.sub("mix") / "excluded.jsonl")) if (ctx.sub("mix") / "excluded.jsonl").is_file() else []
        if excluded:
            lines += ["", "Examples:", ""] + [f"- {e['component']}: \"{e['prompt'][:100]}\" ({e['reason']})"
                                              for e in excluded[:5]]
    text = path.read_text(encoding="utf-8")
    block = "\n".join(lines) + "\n\n"
    at = text.find("## Configuration")
    path.write_text(text[:at] + block + text[at:] if at >= 0 else text + "\n" + block, encoding="utf-8")


def _suite_train_file(ctx: Context) -> str:
    """The suite's train split, without the families ``suite.exclude_families`` leaves out (those
    records are written to ``suite/excluded_train.jsonl``, not dropped silently)."""
    train = ctx.sub("suite") / "train.jsonl"
    excluded = set(ctx.config.suite.exclude_families)
    if not excluded:
        return str(train)
    from tunelens.records import iter_jsonl, write_jsonl

    from tunelens.suite.families import FAMILIES

    rows = list(iter_jsonl(train))
    # Checked against every family the suite has, not those in this file: a small suite (or a
    # hand-made train file) may hold no record of a valid family, and leaving it out is then a no-op.
    known = set(FAMILIES) | {r.get("meta", {}).get("family") for r in rows}
    unknown = sorted(excluded - known)
    if unknown:
        raise TunelensError(f"suite.exclude_families: unknown family {unknown}; the suite's families are {sorted(known)}")
    keep = [r for r in rows if r.get("meta", {}).get("family") not in excluded]
    write_jsonl(ctx.sub("suite") / "excluded_train.jsonl", [r for r in rows if r.get("meta", {}).get("family") in excluded])
    out = ctx.sub("suite") / "train_used.jsonl"
    write_jsonl(out, keep)
    return str(out)


def _reject_reasons(path: Path, top: int = 3) -> str:
    from collections import Counter

    from tunelens.records import iter_jsonl

    counts = Counter(f"{r.get('step')}: {str(r.get('reason'))[:80]}" for r in iter_jsonl(path)) if path.exists() else Counter()
    return "; ".join(f"{n} x {reason}" for reason, n in counts.most_common(top)) or "none recorded"


# --- train -----------------------------------------------------------------------------------

def train_payload(ctx: Context) -> dict[str, Any]:
    # report_to only says where the loss is also logged: changing it does not retrain.
    values = ctx.train_config().model_dump(mode="json", exclude={"output_dir", "resume", "data", "report_to"})
    return {"train": values, "launch": ctx.config.launch.model_dump(),
            "curated": path_digest(ctx.sub("curate") / "curated.jsonl")}


def run_train(ctx: Context) -> dict[str, Any]:
    from tunelens.train import train

    out = ctx.sub("train")
    if not ctx.resume_training and out.exists():
        shutil.rmtree(out)  # a different config, or a forced restart: never mix two runs' checkpoints
    cfg = ctx.train_config().model_copy(update={"resume": ctx.resume_training})
    if ctx.config.launch.accelerate_config:
        return _train_with_accelerate(ctx, cfg)
    result = train(cfg, progress=ctx.progress)
    if result.interrupted:
        raise KeyboardInterrupt
    return {"steps": result.steps, "final_loss": result.final_loss, "tokens_per_s": result.tokens_per_s,
            "wall_s": result.wall_s, "adapter": str(result.adapter_dir or result.model_dir)}


def _train_with_accelerate(ctx: Context, cfg) -> dict[str, Any]:
    """Multi-process training (FSDP, DDP) through `accelerate launch`; the other stages stay single-process."""
    import subprocess
    import sys

    import yaml

    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    request = out / "train_request.yaml"
    request.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    launch = ctx.config.launch
    exe = shutil.which("tunelens") or str(Path(sys.executable).with_name("tunelens"))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(launch.accelerate_config)]
    if launch.num_processes:
        cmd += ["--num_processes", str(launch.num_processes)]
    cmd += [exe, "train", "-c", str(request)]
    ctx.console.print("  " + " ".join(cmd))
    code = subprocess.call(cmd)
    summary_path = out / "train_summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
    if summary.get("interrupted") or code in (130, -2, -15):
        raise KeyboardInterrupt
    if code != 0:
        raise TunelensError(f"`accelerate launch` training exited with code {code} (command: {' '.join(cmd)})")
    return {k: summary.get(k) for k in ("steps", "final_loss", "tokens_per_s", "wall_s")}


def tuned_model_dir(ctx: Context) -> Path:
    for name in ("adapter", "model"):
        if (ctx.sub("train") / name).is_dir():
            return ctx.sub("train") / name
    raise TunelensError(f"{ctx.sub('train')} holds no trained adapter or model: rerun with --from train")


def final_model_dir(ctx: Context) -> Path:
    """The model the run delivers, evaluated and explained as "tuned": the rl stage's adapter (SFT + RL)
    when ``rl.enabled``, else the SFT output."""
    if not ctx.config.rl.enabled:
        return tuned_model_dir(ctx)
    adapter = ctx.sub("rl") / "adapter"
    if not adapter.is_dir():
        raise TunelensError(f"{ctx.sub('rl')} holds no RL adapter (rl.enabled is set): rerun with --from rl")
    return adapter


# --- rl --------------------------------------------------------------------------------------

def _rl_config(ctx: Context):
    if "rl" not in ctx._built:
        ctx._built["rl"] = rl_config(ctx.config, tuned_model_dir(ctx), [_suite_train_file(ctx)], ctx.sub("rl"))
    return ctx._built["rl"]


def rl_payload(ctx: Context) -> dict[str, Any]:
    values = _rl_config(ctx).model_dump(mode="json", exclude={"output_dir", "resume", "data", "model", "report_to"})
    return {"rl": values, "sft": path_digest(tuned_model_dir(ctx)), "prompts": path_digest(Path(_rl_config(ctx).data[0]))}


def run_rl(ctx: Context) -> dict[str, Any]:
    """GRPO from the SFT output (``rl.enabled``); an interrupted rl stage resumes from its last
    checkpoint (``rl.save_steps``) with the same inputs, exactly as ``tunelens train --resume``."""
    from tunelens.train import train

    out = ctx.sub("rl")
    if not ctx.resume_training and out.exists():
        shutil.rmtree(out)  # a different config, or a forced restart: never mix two runs' checkpoints
    result = train(_rl_config(ctx).model_copy(update={"resume": ctx.resume_training}), progress=ctx.progress)
    if result.interrupted:
        raise KeyboardInterrupt
    summary = json.loads((out / "train_summary.json").read_text(encoding="utf-8"))
    return {"steps": result.steps, "reward_first_steps": summary.get("reward_first_steps"),
            "reward_last_steps": summary.get("reward_last_steps"), "wall_s": result.wall_s,
            "adapter": str(result.adapter_dir or result.model_dir)}


# --- evaluate --------------------------------------------------------------------------------

def eval_config(ctx: Context):
    from tunelens.evaluate import EvalConfig

    e, c = ctx.config.evaluate, ctx.config
    models = [{"spec": c.model, "label": "base"}, {"spec": str(final_model_dir(ctx)), "label": "tuned"}]
    pairs = None
    if c.rl.enabled:
        # Three models side by side: SFT alone, and SFT + RL as "tuned"; "sft -> tuned" is what RL added.
        models.insert(1, {"spec": str(tuned_model_dir(ctx)), "label": "sft"})
        pairs = [("base", "sft"), ("base", "tuned"), ("sft", "tuned")]
    values: dict[str, Any] = {
        "models": models, "comparisons": pairs,
        "suites": e.suites, "limit": e.limit, "limits": {k: v for k, v in e.limits.items() if k in e.suites},
        # The builtin suite draws test/heldout items from this seed: the same seed as training data.
        "seed": c.suite.seed,
        "generation": {"max_new_tokens": e.max_new_tokens, "batch_size": e.batch_size,
                       "backend": e.backend, "quant": e.quant, "logprob_backend": e.logprob_backend},
        "output_dir": str(ctx.sub("eval")),
    }
    if c.suite.enabled and (ctx.sub("suite") / "test.jsonl").exists():
        values["reference_data"] = str(ctx.sub("suite") / "test.jsonl")  # loss on unseen instances
    values.update(e.options)
    return validate(EvalConfig, values, "eval config", "the run config's evaluate section (its options are EvalConfig fields)")


def evaluate_payload(ctx: Context) -> dict[str, Any]:
    cfg = ctx.eval_config()
    # comparisons: only when set (the rl stage's three models), so runs without it keep their hash.
    skip = {"output_dir", "cache_dir", "models", "reference_data"} | ({"comparisons"} if cfg.comparisons is None else set())
    values = cfg.model_dump(mode="json", exclude=skip)
    out = {"evaluate": values, "base": ctx.config.model, "tuned": path_digest(final_model_dir(ctx)),
           "reference": path_digest(cfg.reference_data) if cfg.reference_data else None}
    if ctx.config.rl.enabled:
        out["sft"] = path_digest(tuned_model_dir(ctx))
    return out


def run_evaluate(ctx: Context) -> dict[str, Any]:
    from tunelens.evaluate import evaluate

    results = evaluate(ctx.eval_config(), progress=ctx.progress)
    sig = [f"{c['suite']}/{c['metric']}" for c in results.get("comparisons", []) if c.get("significant")]
    return {"suites": list(ctx.config.evaluate.suites), "significant_changes": len(sig)}


# --- explain ---------------------------------------------------------------------------------

def explain_payload(ctx: Context) -> dict[str, Any]:
    backend, quant = ctx.config.explain_generation()
    # The backend that generates the explained responses (hf keeps the hash of old: runs stay complete).
    generation = {} if backend == "hf" else {"generation": {"backend": backend, "quant": quant}}
    rl = {"sft": path_digest(tuned_model_dir(ctx))} if ctx.config.rl.enabled else {}
    return {"explain": ctx.config.explain.model_dump(exclude={"backend", "quant"}), "base": ctx.config.model,
            "tuned": path_digest(final_model_dir(ctx)), "suite": ctx.config.suite.model_dump(), **generation, **rl}


def run_explain(ctx: Context) -> dict[str, Any]:
    from tunelens.pipeline.explain_stage import explain_run

    sft = tuned_model_dir(ctx) if ctx.config.rl.enabled else None
    return explain_run(ctx, final_model_dir(ctx), sft_dir=sft)


# --- cards and report ------------------------------------------------------------------------

def report_payload(ctx: Context) -> dict[str, Any]:
    from tunelens import __version__

    keys = ("curate", "train", "rl", "evaluate", "explain")
    markers = {k: (ctx.dir / "stages" / f"{k}.done") for k in keys}
    return {"upstream": {k: path_digest(p) if p.exists() else None for k, p in markers.items()}, "version": __version__}


def run_report(ctx: Context) -> dict[str, Any]:
    from tunelens.cards import load_run, write_cards
    from tunelens.pipeline.report import write_report
    from tunelens.pipeline.summary import build_summary

    # The summary first: the model card reads its verdicts and guard status from summary.json.
    summary = build_summary(ctx.dir)
    (ctx.dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    art = load_run(ctx.dir)
    written = write_cards(art)
    report = write_report(ctx.dir)
    return {"cards": written, "report": str(report.relative_to(ctx.dir)), "status": summary.get("status")}
