"""``run_pipeline``: curate -> train -> evaluate -> explain -> report, resumable and skip-on-rerun.

A stage is skipped when its marker's hash equals the hash of its config and inputs (upstream
artifacts included), so editing one stage's config reruns it and everything after it.
Ctrl-C or SIGTERM stops the run with the state saved; training stops at a checkpoint and the
next ``tunelens run`` with the same config resumes it from there.
"""

from __future__ import annotations

import signal
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from tunelens.errors import TunelensError
from tunelens.pipeline import stages
from tunelens.pipeline.config import STAGES, RunConfig
from tunelens.pipeline.state import RunState, stage_hash

STAGE_FUNCS: dict[str, tuple[Callable[[stages.Context], dict], Callable[[stages.Context], dict]]] = {
    "curate": (stages.curate_payload, stages.run_curate),
    "train": (stages.train_payload, stages.run_train),
    "rl": (stages.rl_payload, stages.run_rl),
    "evaluate": (stages.evaluate_payload, stages.run_evaluate),
    "explain": (stages.explain_payload, stages.run_explain),
    "report": (stages.report_payload, stages.run_report),
}


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _can_resume_training(ctx: stages.Context, state: RunState, name: str, digest: str) -> bool:
    """Whether stage ``name`` (train or rl) was interrupted with the same inputs and left a checkpoint."""
    from tunelens.train.run import last_checkpoint

    return (name in ("train", "rl") and state.in_progress_hash(name) == digest
            and last_checkpoint(ctx.sub(name) / "checkpoints") is not None)


def run_pipeline(config: RunConfig, from_stage: str | None = None, progress: bool = True,
                 console: Console | None = None) -> dict[str, Any]:
    """Run (or resume) every stage into ``config.directory()``; returns the closing summary."""
    from tunelens.pipeline.summary import build_summary, rl_table, summary_table

    console = console or Console(stderr=True)
    if from_stage is not None and from_stage not in STAGES:
        raise TunelensError(f"--from {from_stage!r}: choose one of {', '.join(STAGES)}")
    run_dir = config.directory()
    run_dir.mkdir(parents=True, exist_ok=True)
    # The validated config, every section written out in full (a file `tunelens run` reads back as is).
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json", by_alias=True), sort_keys=False),
                                         encoding="utf-8")
    state = RunState(run_dir)
    if from_stage is not None:
        for name in STAGES[STAGES.index(from_stage):]:
            state.invalidate(name)
            if name in ("train", "rl") and (run_dir / name).exists():
                shutil.rmtree(run_dir / name)  # a forced restart trains from scratch
        state.save()
    ctx = stages.Context(config=config, dir=run_dir, progress=progress, console=console)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread
        previous = None
    started = time.perf_counter()
    current = None
    try:
        for i, name in enumerate(STAGES, 1):
            current = name
            console.rule(f"[bold]stage {i}/{len(STAGES)}: {name}[/]")
            if name == "explain" and not config.explain.enabled:
                state.invalidate(name)
                console.print("  disabled in the config (explain.enabled: false)")
                continue
            if name == "rl" and not config.rl.enabled:
                state.invalidate(name)
                console.print("  off (rl.enabled: false, the default; docs/grpo.md)")
                continue
            payload, run = STAGE_FUNCS[name]
            digest = stage_hash({"stage": name, **payload(ctx)})
            if state.is_complete(name, digest):
                state.skipped(name)
                console.print(f"  [green]skipped[/]: already complete with the same inputs and config (hash {digest})")
                continue
            ctx.resume_training = _can_resume_training(ctx, state, name, digest)
            if ctx.resume_training:
                console.print(f"  [cyan]resuming the interrupted {'training' if name == 'train' else 'RL'} "
                              "from its last checkpoint[/]")
            state.start(name, digest)
            t0 = time.perf_counter()
            summary = run(ctx)
            state.complete(name, digest, time.perf_counter() - t0, summary)
            console.print(f"  [green]done[/] in {time.perf_counter() - t0:.1f}s")
    except KeyboardInterrupt:
        if current is not None:
            state.interrupted(current)
        console.print(f"[yellow]run interrupted during {current}; state saved in {run_dir}. "
                      f"Run the same command again to resume.[/]")
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    state.data["status"] = "complete"
    state.data["last_wall_s"] = round(time.perf_counter() - started, 2)
    state.save()
    summary = build_summary(run_dir)
    console.print(summary_table(summary))
    if rl_table(summary) is not None:
        console.print(rl_table(summary))
    console.print(f"run dir: {run_dir}  report: {run_dir / 'report.html'}  model card: {run_dir / 'cards' / 'model_card.md'}")
    return summary


def report_only(run_dir: Path) -> Path:
    from tunelens.pipeline.report import write_report

    return write_report(run_dir)
