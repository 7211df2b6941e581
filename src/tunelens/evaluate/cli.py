"""`tunelens eval`: evaluate and compare models."""

from __future__ import annotations

from pathlib import Path

import typer

from tunelens.evaluate.config import FEWSHOT_SUITES, SUITES
from tunelens.evaluate.suites import all_suites


def _defaults_help() -> str:
    """'all; toxicity/rouge/loss/builtin 200': the items a suite takes without --limit, from the registry."""
    by_limit: dict[int, list[str]] = {}
    for name, suite in all_suites().items():
        if suite.default_limit is not None:
            by_limit.setdefault(suite.default_limit, []).append(name)
    return "; ".join(["all"] + [f"{'/'.join(names)} {n}" for n, names in by_limit.items()])


def _fewshot_lines(per_suite: dict) -> list[str]:
    """One console line per suite: accuracy and tokens per correct answer, k-shot vs 0-shot."""
    from tunelens.evaluate.fewshot import verdict

    lines = []
    for suite, fz in per_suite.items():
        if fz is None:
            lines.append(f"few-shot vs zero-shot on {suite}: no item scored in both variants")
            continue
        fs, zs = fz["fewshot"], fz["zeroshot"]

        def per_correct(side):
            return f"{side['tokens_per_correct']:.0f}" if side["tokens_per_correct"] is not None else "-"

        ratio = fz["token_ratio_per_correct"]
        lines.append(f"few-shot vs zero-shot on {suite} (n={fs['n']}): {fz['fewshot_model']} {fz['k']}-shot "
                     f"{fs['accuracy']:.3f}, {per_correct(fs)} tokens/correct; {fz['zeroshot_model']} 0-shot "
                     f"{zs['accuracy']:.3f}, {per_correct(zs)} tokens/correct; ratio "
                     f"{f'{ratio:.2f}x' if ratio is not None else '-'}; {verdict(fz)}")
    return lines


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root app."""

    @app.command("eval")
    def eval_cmd(
        model: list[str] = typer.Option(..., "--model", "-m", help="Model to evaluate (repeat to compare; the first is the reference). "
                                        "Hub id, local dir, adapter dir, .gguf, smollm2-135m or tiny-random. 'LABEL=SPEC' names it."),
        suite: list[str] = typer.Option(["all"], "--suite", "-s", help=f"Suites (repeat or comma-separate): {', '.join(SUITES)}, or all."),
        output: Path = typer.Option(..., "--output", "-o", help="Output folder for results.json, samples.jsonl and report.html."),
        limit: int = typer.Option(None, "--limit", min=1, help=f"Items per suite, for quick runs (default: {_defaults_help()}). "
                            "For builtin it is the suite size given to tunelens.suite.eval_items (its test+heldout part is scored)."),
        seed: int = typer.Option(0, "--seed", help="Seed for item subsets, sampling and the bootstrap."),
        max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1, help="Tokens generated per prompt at most."),
        temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="Sampling temperature (0 = greedy)."),
        top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling mass (with temperature > 0)."),
        batch_size: int = typer.Option(8, "--batch-size", min=1, help="Prompts per generation batch."),
        backend: str = typer.Option("hf", "--backend", help="Generation backend: hf (transformers fp32, the reference; "
                                    "an adapter is merged first), llamacpp (llama.cpp on the model's GGUF export), "
                                    "vllm (CUDA), auto (the fastest available, saying which)."),
        quant: str = typer.Option("auto", "--quant", help="GGUF quantisation for --backend llamacpp: f32, f16, q8_0, "
                                  "q4_k_m, or auto (f16 where llama.cpp was built with AVX-512, else q8_0)."),
        logprob_backend: str = typer.Option("auto", "--logprob-backend", help="What scores the multiple-choice "
                                            "suites (TruthfulQA MC, BBQ): hf (fp32, the reference), llamacpp (the "
                                            "GGUF export), or auto (llamacpp when --backend resolves to llamacpp at "
                                            "f16 or f32, else hf). The loss suite always runs in transformers."),
        few_shot: int = typer.Option(5, "--few-shot", min=1, max=16, help="Exemplars (k) in each k-shot prompt."),
        few_shot_suites: str = typer.Option(None, "--few-shot-suites", help="Suites that also get a k-shot variant, "
                                            f"comma-separated: {', '.join(FEWSHOT_SUITES)}, or none (default: gsm8k). "
                                            "The cost of a correct answer, k-shot on the first -m against 0-shot on the last, "
                                            "is reported per suite."),
        few_shot_seed: int = typer.Option(1234, "--few-shot-seed", help="Seed choosing the k-shot exemplars."),
        data_dir: Path = typer.Option(None, "--data-dir", help="Data folder (default: TUNELENS_DATA_DIR or ../shared/data)."),
        reference_data: Path = typer.Option(None, "--reference-data", help="Curated JSONL of conversations for ROUGE-L and held-out loss "
                                            "(default: a fixed 5% held-out slice of Alpaca)."),
        cache_dir: Path = typer.Option(None, "--cache-dir", help="Generation cache folder (default: TUNELENS_CACHE/eval-generations)."),
        no_cache: bool = typer.Option(False, "--no-cache", help="Ignore and do not write the generation and log-prob caches."),
        resamples: int = typer.Option(2000, "--bootstrap-resamples", min=100, help="Bootstrap resamples for CIs."),
        compare: list[str] = typer.Option(None, "--compare", help="A pair of model labels A:B to compare (B - A, paired); "
                                          "repeat for more (default: the first model against each other one)."),
        instrument: list[str] = typer.Option(None, "--instrument", help="TASK=NAME: score a safety task's rates with "
                                             "another instrument, e.g. refusal=refusal-lm, harm=harm-lm (slower, more "
                                             "accurate; docs/safety.md). Repeat for more."),
        judge: str = typer.Option(None, "--judge", help="OpenAI-compatible base URL of an LLM judge for the refusal and "
                                  "harm rates (vLLM, llama.cpp, Ollama, tunelens serve, a hosted API; key from "
                                  "TUNELENS_JUDGE_API_KEY or OPENAI_API_KEY)."),
        judge_model: str = typer.Option(None, "--judge-model", help="Model name at the judge endpoint (default: the first it lists)."),
        judge_task: list[str] = typer.Option(None, "--judge-task", help="A rate the judge scores: refusal or harm "
                                             "(repeat; default both)."),
        judge_card: list[str] = typer.Option(None, "--judge-card", help="TASK=CARD.json from `tunelens safety validate "
                                             "--task TASK --judge URL -o CARD.json`: the judge's measured error, used to "
                                             "correct its rates (without one they are shown raw)."),
        judge_concurrency: int = typer.Option(4, "--judge-concurrency", min=1, help="Judge requests in flight at once."),
        judge_max_tokens: int = typer.Option(16, "--judge-max-tokens", min=1, help="Longest judge answer (raise it for reasoning models)."),
    ) -> None:
        """Evaluate one or more models on the same prompts and compare them (paired bootstrap CIs)."""
        from rich.console import Console
        from rich.table import Table

        from tunelens.config_files import validate
        from tunelens.evaluate import EvalConfig, evaluate

        models = []
        for m in model:
            label, sep, spec = m.partition("=")
            models.append({"spec": spec, "label": label} if sep and label and "/" not in label else {"spec": m})
        pairs = None
        if compare:
            pairs = []
            for pair in compare:
                a, sep, b = pair.partition(":")
                if not sep or not a or not b:
                    raise typer.BadParameter(f"{pair!r}: give two model labels as A:B", param_hint="--compare")
                pairs.append((a, b))
        chosen: dict[str, str] = {}
        for item in instrument or []:
            task, sep, name = item.partition("=")
            if not sep or not task or not name:
                raise typer.BadParameter(f"{item!r}: give TASK=NAME, e.g. refusal=refusal-lm", param_hint="--instrument")
            chosen[task.strip()] = name.strip()
        judge_config = None
        if judge:
            cards: dict[str, str] = {}
            for item in judge_card or []:
                task, sep, path = item.partition("=")
                if not sep or not task or not path:
                    raise typer.BadParameter(f"{item!r}: give TASK=CARD.json, e.g. refusal=judge-refusal.json",
                                             param_hint="--judge-card")
                cards[task.strip()] = path.strip()
            judge_config = {"url": judge, "model": judge_model, "cards": cards, "concurrency": judge_concurrency,
                            "max_tokens": judge_max_tokens, **({"tasks": judge_task} if judge_task else {})}
        elif judge_model or judge_task or judge_card:
            raise typer.BadParameter("--judge-model, --judge-task and --judge-card need --judge URL", param_hint="--judge")
        config = validate(EvalConfig, dict(
            judge=judge_config, instruments=chosen, models=models, comparisons=pairs, suites=suite, limit=limit, seed=seed, output_dir=output, data_dir=data_dir,
            reference_data=reference_data, cache_dir=cache_dir, use_cache=not no_cache, bootstrap_resamples=resamples,
            generation={"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "batch_size": batch_size,
                        "backend": backend, "quant": quant, "logprob_backend": logprob_backend},
            few_shot={"k": few_shot, "seed": few_shot_seed,
                      **({"suites": few_shot_suites} if few_shot_suites is not None else {})},
        ), "eval config", "options")
        report = evaluate(config, progress=True)
        console = Console()
        labels = list(report["results"])
        deltas = {(c["suite"], c["metric"], c["a"], c["b"]): c for c in report["comparisons"]}
        pairs = config.pairs()
        table = Table(title="results (CIs, p-values and examples: report.html)")
        table.add_column("suite/metric", overflow="fold")
        for label in labels:
            table.add_column(label, justify="right")
        for a, b in pairs:
            table.add_column(f"Δ {b}" if a == labels[0] else f"Δ {b} - {a}", justify="right")
        for suite_name, metrics in report["results"][labels[0]].items():
            for metric in metrics:
                cells = []
                for label in labels:
                    e = report["results"][label].get(suite_name, {}).get(metric)
                    cells.append(f"{e['value']:.3f}" if e else "-")
                for a, b in pairs:
                    c = deltas.get((suite_name, metric, a, b))
                    cells.append(f"{c['delta']:+.3f}{'*' if c['significant'] else ''}" if c else "-")
                table.add_row(f"{suite_name}/{metric}", *cells)
        console.print(table)
        if len(labels) > 1:
            console.print("* = the paired bootstrap 95% CI of the delta excludes 0")
        sig = [c for c in report["comparisons"] if c["significant"]]
        if report["comparisons"]:
            console.print(f"{len(sig)} of {len(report['comparisons'])} deltas significant at 95%")
        if report["skipped"]:
            console.print(f"[yellow]{len(report['skipped'])} item(s) skipped[/] (listed in results.json 'skipped')")
        for line in _fewshot_lines(report["cost"].get("fewshot_vs_zeroshot") or {}):
            console.print(line)
        console.print(f"wrote {output / 'results.json'}, {output / 'samples.jsonl'}, {output / 'report.html'} "
                      f"and lm-eval-harness results under {output / 'lm-eval'}")
