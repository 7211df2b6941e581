"""``tunelens explain``, ``explain-focus`` and ``explain-rationale``: options in, ``tunelens.explain.runs`` does the work.

The ``--method`` help and the method list are generated from the registry (``tunelens.explain.methods``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from tunelens.errors import TunelensError
from tunelens.explain import methods
from tunelens.explain.runs import read_prompts

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add ``tunelens explain``, ``explain-focus`` and ``explain-rationale`` to the root app."""
    _register_focus(app)
    _register_rationale(app)

    @app.command("explain", epilog=methods.help_epilog())
    def explain_cmd(
        model: str = typer.Option(..., "--model", "-m", help="Model to explain: hub id, local dir, adapter dir, .gguf, smollm2-135m or tiny-random."),
        out: Path = typer.Option(..., "--out", "-o", help="Output directory (attributions.json/.html, heatmaps/, faithfulness.json, diff.html, tda.json)."),
        prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="One user prompt to explain."),
        prompts: Optional[Path] = typer.Option(None, "--prompts", help="A .txt (one prompt per line) or .jsonl file (records or {prompt, response})."),
        response: Optional[str] = typer.Option(None, "--response", help="Explain this response to --prompt instead of generating one."),
        base: Optional[str] = typer.Option(None, "--base", help="Base model: also explain it and write diff.html (base vs tuned side by side)."),
        method: str = typer.Option(methods.DEFAULT, "--method", help=methods.help_text()),
        granularity: Optional[str] = typer.Option(None, "--granularity", help="Occlusion segments: word (default), token, sentence, or span (the instruction/context spans in each --prompts JSONL line's meta; other tokens stay words)."),
        steps: int = typer.Option(16, "--steps", min=1, help="Integrated-gradients interpolation steps (Gauss-Legendre)."),
        ig_baseline: str = typer.Option("mean", "--ig-baseline", help="Integrated-gradients baseline: mean (vocabulary-mean "
                                        "embedding; smallest completeness gap), pad, or zero (measured more faithful on "
                                        "SmolLM2 but far from complete; see docs/explain.md)."),
        train_run: Optional[Path] = typer.Option(None, "--train-run", help="A `tunelens train` run directory: rank its training examples by influence (tda.json)."),
        tda_method: str = typer.Option("gradient", "--tda-method", help="Training-data attribution: gradient (TracIn-style over LoRA) or representation."),
        top_k: int = typer.Option(10, "--top-k", min=1, help="Training examples to list per response."),
        exclude_template: bool = typer.Option(False, "--exclude-template", help="Leave chat-template tokens out of the aggregate (still shown)."),
        max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1, help="Length limit of generated responses."),
        no_faithfulness: bool = typer.Option(False, "--no-faithfulness", help="Skip the comprehensiveness/sufficiency check."),
        n_random: int = typer.Option(8, "--n-random", min=1, help="Random selections per k for the faithfulness baseline."),
    ) -> None:
        """Which prompt tokens drove each response, is that explanation faithful, what did tuning change,
        and which training examples shaped the response."""
        from tunelens.explain.runs import attach_occlusion_spans, check_granularity, explain_prompts

        if (prompt is None) == (prompts is None):
            raise TunelensError("give exactly one of --prompt TEXT or --prompts FILE")
        if response is not None and prompt is None:
            raise TunelensError("--response goes with --prompt (put responses in the --prompts file instead)")
        if tda_method not in ("gradient", "representation"):
            raise TunelensError(f"--tda-method must be gradient or representation, got {tda_method!r}")
        if train_run is not None and not train_run.is_dir():
            raise TunelensError(f"--train-run {train_run} is not a directory")
        items = read_prompts(prompts) if prompts else [
            {"id": "prompt", "messages": [{"role": "user", "content": prompt}], "response": response}
        ]
        if check_granularity(methods.resolve(method), granularity) == "span":
            if prompts is None:
                raise TunelensError("--granularity span reads spans from the --prompts JSONL lines' meta; --prompt has none")
            attach_occlusion_spans(items)
        summary = explain_prompts(
            model, items, out, method=method, base_spec=base, train_run=train_run, tda_method=tda_method, top_k=top_k,
            exclude_template=exclude_template, max_new_tokens=max_new_tokens, steps=steps, ig_baseline=ig_baseline,
            check_faithfulness=not no_faithfulness, n_random=n_random, granularity=granularity,
        )
        console.print(f"[green]explained {summary['items']} prompt(s)[/] ({summary['skipped']} skipped) -> {out}: "
                      f"{', '.join(summary['written'])}")
        if summary.get("flagged"):
            console.print(f"[yellow]not better than random (do not trust): {', '.join(summary['flagged'])}[/]")


def _register_focus(app: typer.Typer) -> None:
    @app.command("explain-focus", epilog=methods.help_epilog())
    def focus_cmd(
        model: str = typer.Option(..., "--model", "-m", help="Tuned model: hub id, local dir, adapter dir, .gguf, smollm2-135m or tiny-random."),
        out: Path = typer.Option(..., "--out", "-o", help="Output directory (focus.json, focus.png, focus.html)."),
        base: Optional[str] = typer.Option(None, "--base", help="Base model: also measure it and report tuned - base with a paired bootstrap CI."),
        items: Optional[Path] = typer.Option(None, "--items", help="JSONL of conversation records with meta.instruction_span and meta.context_span (suite records, alpaca_focus_items)."),
        alpaca: Optional[int] = typer.Option(None, "--alpaca", min=1, help="Use N Alpaca rows that have a separate input (instruction = instruction, context = input)."),
        data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder holding alpaca_data.json (default: TUNELENS_DATA_DIR or ../shared/data)."),
        method: str = typer.Option(methods.DEFAULT, "--method", help=methods.help_text()),
        steps: int = typer.Option(16, "--steps", min=1, help="Integrated-gradients interpolation steps."),
        own_responses: bool = typer.Option(False, "--own-responses", help="Explain each model's own greedy response even when a record has an assistant turn."),
        max_new_tokens: int = typer.Option(32, "--max-new-tokens", min=1, help="Length limit of generated responses."),
        n_boot: int = typer.Option(2000, "--n-boot", min=100, help="Bootstrap resamples for the confidence intervals."),
        seed: int = typer.Option(0, "--seed", help="Seed of the Alpaca sample and of the bootstrap."),
    ) -> None:
        """Share of attribution on the instruction vs the context, per model, and what tuning changed."""
        from tunelens.explain.focus import alpaca_focus_items
        from tunelens.explain.runs import explain_focus, method_options, read_focus_items

        if (items is None) == (alpaca is None):
            raise TunelensError("give exactly one of --items FILE or --alpaca N")
        method = methods.resolve(method)
        skipped: list[dict] = []
        if items is not None:
            records, skipped = read_focus_items(items)
            source = {"items": str(items)}
        else:
            from tunelens.evaluate.datafiles import ALPACA_FILE, data_file

            path = data_file(ALPACA_FILE, data_dir)
            records = alpaca_focus_items(path, alpaca, seed=seed)
            source = {"alpaca": str(path), "n": alpaca, "seed": seed}
        doc = explain_focus(model, records, out, base_spec=base, method=method, max_new_tokens=max_new_tokens,
                            n_boot=n_boot, seed=seed, own_responses=own_responses, source=source, skipped=skipped,
                            **method_options(method, steps=steps))
        t = doc["tuned"]
        console.print(f"[green]instruction focus[/] tuned: {_num(t['mean'])} (95% CI {_pair(t['ci95'])}, n={t['n']}; "
                      f"length share {_num(t['length_share_mean'])}) -> {out}")
        if doc["difference"]:
            d = doc["difference"]
            console.print(f"tuned - base: {_num(d['difference_mean'])} (95% CI {_pair(d['difference_ci95'])}): {d['reading']}")
        dropped = len(doc["skipped"]) + len(t["skipped"])
        if dropped:
            console.print(f"[yellow]{dropped} item(s) skipped; reasons in focus.json[/]")


def _register_rationale(app: typer.Typer) -> None:
    @app.command("explain-rationale")
    def rationale_cmd(
        model: str = typer.Option(..., "--model", "-m", help="Model: hub id, local dir, adapter dir, .gguf, smollm2-135m or tiny-random."),
        out: Path = typer.Option(..., "--out", "-o", help="Output directory (rationale.json, rationale.png, rationale.html)."),
        gsm8k: Optional[int] = typer.Option(None, "--gsm8k", min=1, help="Use N GSM8K test questions (seeded sample), asking for reasoning then 'Answer: N'."),
        prompts: Optional[Path] = typer.Option(None, "--prompts", help="A .txt or .jsonl prompts file (as for `tunelens explain`); a given response is tested as is."),
        data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder holding gsm8k_test.jsonl (default: TUNELENS_DATA_DIR or ../shared/data)."),
        shots: int = typer.Option(0, "--shots", min=0, help="With --gsm8k: worked train examples (ending 'Answer: N') before each question."),
        seed: int = typer.Option(0, "--seed", help="Seed of the GSM8K sample and exemplars."),
        max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1, help="Length limit of generated rationales and continuations."),
        answer_tokens: int = typer.Option(12, "--answer-tokens", min=1, help="Tokens generated after a forced 'Answer:'."),
        batch_size: int = typer.Option(8, "--batch-size", min=1, help="Generation batch size."),
    ) -> None:
        """Does the final answer depend on the reasoning? Early answering (0/25/50/75% of the rationale)
        and an inserted error; the verdict says 'decoration' when it does not."""
        from tunelens.explain.runs import explain_rationale, gsm8k_items, prompt_items

        if (gsm8k is None) == (prompts is None):
            raise TunelensError("give exactly one of --gsm8k N or --prompts FILE")
        if gsm8k is not None:
            items = gsm8k_items(gsm8k, data_dir, shots=shots, seed=seed)
            source = {"gsm8k": gsm8k, "shots": shots, "seed": seed}
        else:
            items = prompt_items(prompts)
            source = {"prompts": str(prompts)}
        doc = explain_rationale(model, items, out, max_new_tokens=max_new_tokens, answer_tokens=answer_tokens,
                                batch_size=batch_size, source=source)
        console.print(f"[green]rationale faithfulness[/]: {doc['n_evaluated']} of {doc['n_items']} item(s) measured -> {out}")
        console.print(f"verdict: {doc['verdict']}")


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _pair(ci: Any) -> str:
    return "n/a" if not ci or ci[0] is None else f"{ci[0]:.3f}..{ci[1]:.3f}"
