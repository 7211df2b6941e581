"""``tunelens explain``: attributions, faithfulness, base-vs-tuned diff and training-data attribution."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from tunelens.errors import TunelensError
from tunelens.explain import methods

console = Console(stderr=True)
SCHEMA = "tunelens.attributions/v1"


def read_prompts(path: Path) -> list[dict[str, Any]]:
    """Items {id, messages, response|None} from a .txt (one prompt per line) or .jsonl file.

    JSONL lines are conversation records (a final assistant turn is the response to explain),
    or objects with ``prompt`` (str) and an optional ``response``. A line's ``meta`` is kept
    (occlusion over spans reads its instruction/context spans).
    """
    from tunelens.explain.encoding import validate_messages
    from tunelens.records import iter_jsonl_numbered

    if not path.is_file():
        raise TunelensError(f"prompts file not found: {path}")
    items: list[dict[str, Any]] = []
    if path.suffix == ".txt":
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                items.append({"id": f"{path.name}:{n}", "messages": [{"role": "user", "content": line.strip()}],
                              "response": None, "where": f"{path}:{n}"})
    else:
        try:
            for n, obj in iter_jsonl_numbered(path):
                where = f"{path}:{n}"
                if isinstance(obj.get("messages"), list):
                    messages = validate_messages(obj["messages"], where)
                    response = obj.get("response")
                    if messages[-1]["role"] == "assistant":
                        messages, response = messages[:-1], messages[-1]["content"]
                elif isinstance(obj.get("prompt"), str):
                    messages, response = [{"role": "user", "content": obj["prompt"]}], obj.get("response")
                else:
                    raise TunelensError(f"{where}: expected 'messages' (a conversation record) or 'prompt' (a string)")
                if response is not None and not isinstance(response, str):
                    raise TunelensError(f"{where}: 'response' must be a string")
                if not messages:
                    raise TunelensError(f"{where}: no prompt messages before the response")
                items.append({"id": str(obj.get("id", f"{path.name}:{n}")), "messages": messages, "response": response,
                              "meta": obj.get("meta"), "where": where})
        except ValueError as exc:
            raise TunelensError(str(exc)) from None
    if not items:
        raise TunelensError(f"{path} holds no prompts")
    return items


def run_explain(
    model_spec: str, items: list[dict], out: Path, *, method: str = "input_x_gradient", base_spec: str | None = None,
    train_run: Path | None = None, tda_method: str = "gradient", top_k: int = 10, exclude_template: bool = False,
    max_new_tokens: int = 64, steps: int = 16, check_faithfulness: bool = True, n_random: int = 8,
    ig_baseline: str = "mean",
    granularity: str | None = None,
) -> dict[str, Any]:
    """Everything ``tunelens explain`` writes; returns a summary.

    ``granularity`` (occlusion only): word | token | sentence | span; with span, each item
    carries ``spans`` (see ``occlusion_spans``).
    """
    from rich.progress import Progress

    from tunelens.explain import attribute, faithfulness, render_diff_html, render_html, save_heatmap_png, train_attribution
    from tunelens.explain.methods import resolve as resolve_method
    from tunelens.models import load_model

    method = resolve_method(method)
    granularity = check_granularity(method, granularity)
    if ig_baseline not in ("mean", "pad", "zero"):
        raise TunelensError(f"--ig-baseline must be mean, pad or zero, got {ig_baseline!r}")
    accepted = methods.get(method).options
    candidates = {"steps": steps, "baseline": ig_baseline, "granularity": granularity}
    kwargs: dict[str, Any] = {k: v for k, v in candidates.items() if k in accepted and v is not None}
    out.mkdir(parents=True, exist_ok=True)
    (out / "heatmaps").mkdir(exist_ok=True)
    models = [("tuned", load_model(model_spec))]
    if base_spec:
        models.append(("base", load_model(base_spec)))
    results: list[dict[str, Any]] = [{"id": it["id"]} for it in items]
    skipped: list[dict[str, str]] = []
    faith_rows = []
    with Progress(console=console, transient=True) as progress:
        for role, loaded in models:
            task = progress.add_task(f"{method} on {role} model", total=len(items))
            for n, (row, item) in enumerate(zip(results, items)):
                progress.advance(task)
                if row.get("skipped"):
                    continue
                try:
                    item_kwargs = {**kwargs, "spans": item["spans"]} if granularity == "span" else kwargs
                    attr = attribute(loaded.model, loaded.tokenizer, item["messages"],
                                     item["response"], method,
                                     exclude_template=exclude_template, max_new_tokens=max_new_tokens, **item_kwargs)
                except TunelensError as exc:
                    # One bad prompt must not sink the batch; it is listed with its reason.
                    row["skipped"] = True
                    skipped.append({"id": item["id"], "model": role, "reason": str(exc)})
                    continue
                key = "attribution" if role == "tuned" else "base_attribution"
                row[key] = attr
                png = out / "heatmaps" / f"{'base_' if role == 'base' else ''}{n:03d}.png"
                save_heatmap_png(attr, png)
                row["heatmap" if role == "tuned" else "base_heatmap"] = str(png.relative_to(out))
                if check_faithfulness and role == "tuned":
                    faith_rows.append({"id": item["id"], **faithfulness(loaded.model, loaded.tokenizer, attr, n_random=n_random)})
        results = [row for row in results if not row.get("skipped")]
        for row in skipped:
            console.print(f"[yellow]skipped {row['id']} ({row['model']} model): {row['reason']}[/]")
        if not results:
            raise TunelensError(f"no prompt could be explained; first reason: {skipped[0]['reason']}")
        faith_rows = [r for r in faith_rows if any(r["id"] == row["id"] for row in results)]
        tda = None
        if train_run is not None:
            from tunelens.explain.tda import load_run

            tda = {"run": str(train_run), "method": tda_method, "items": [], "skipped": []}
            run_model, run_tok, run_records, run_info = load_run(train_run)  # once for all prompts
            task = progress.add_task("training-data attribution", total=len(results))
            for row in results:
                report: dict[str, Any] = {}
                attr = row["attribution"]
                top = train_attribution((run_model, run_tok, run_records), attr.messages, attr.response, k=top_k,
                                        method=tda_method, report=report, max_length=run_info.get("max_length"),
                                        cache_dir=train_run / "explain_cache", progress=True)
                tda["items"].append({"id": row["id"], "response": attr.response, "top": top})
                tda["skipped"] = report.get("skipped", [])
                progress.advance(task)

    tuned_model = models[0][1]
    doc = {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": {"spec": model_spec, "id": tuned_model.model_id},
        "base_model": {"spec": base_spec, "id": models[1][1].model_id} if base_spec else None,
        "method": method,
        "granularity": granularity,
        "exclude_template": exclude_template,
        "skipped": skipped,
        "items": [
            {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in row.items()} for row in results
        ],
    }
    (out / "attributions.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    attrs = [row["attribution"] for row in results]
    (out / "attributions.html").write_text(render_html(attrs, title=f"tunelens explain: {model_spec}"), encoding="utf-8")
    written = ["attributions.json", "attributions.html", "heatmaps/"]
    if base_spec:
        pairs = [(row["base_attribution"], row["attribution"]) for row in results]
        (out / "diff.html").write_text(render_diff_html(pairs, base_label=base_spec, tuned_label=model_spec), encoding="utf-8")
        written.append("diff.html")
    summary: dict[str, Any] = {"items": len(results), "skipped": len(skipped), "written": written}
    if check_faithfulness:
        flagged = [r["id"] for r in faith_rows if not r["better_than_random"]]
        faith_doc = {
            "method": method,
            "items": faith_rows,
            "n_better_than_random": len(faith_rows) - len(flagged),
            "not_better_than_random": flagged,
        }
        (out / "faithfulness.json").write_text(json.dumps(faith_doc, indent=1), encoding="utf-8")
        written.append("faithfulness.json")
        summary["flagged"] = flagged
    if tda is not None:
        (out / "tda.json").write_text(json.dumps(tda, indent=1), encoding="utf-8")
        written.append("tda.json")
    return summary


def check_granularity(method: str, granularity: str | None) -> str | None:
    """The occlusion granularity to use (word by default); None for the other methods."""
    from tunelens.explain.occlusion import GRANULARITIES

    takes = methods.accepting("granularity")
    if method not in takes:
        if granularity not in (None, "word"):
            raise TunelensError(f"--granularity applies to --method {' / '.join(takes)} only (method is {method})")
        return None
    granularity = granularity or "word"
    if granularity not in GRANULARITIES:
        raise TunelensError(f"--granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}")
    return granularity


def occlusion_spans(items: list[dict[str, Any]]) -> None:
    """Attach each item's spans from its meta (granularity span); the first item without any is an error."""
    from tunelens.explain.occlusion import spans_from_meta

    for item in items:
        where = item.get("where", item["id"])
        item["spans"] = spans_from_meta(item["messages"], item.get("meta"), where)


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
        from tunelens.explain.methods import resolve as resolve_method

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
        if check_granularity(resolve_method(method), granularity) == "span":
            if prompts is None:
                raise TunelensError("--granularity span reads spans from the --prompts JSONL lines' meta; --prompt has none")
            occlusion_spans(items)
        summary = run_explain(
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
        from tunelens.explain.methods import resolve as resolve_method
        from tunelens.explain.focus import alpaca_focus_items
        from tunelens.explain.reports import read_focus_items, run_focus

        if (items is None) == (alpaca is None):
            raise TunelensError("give exactly one of --items FILE or --alpaca N")
        method = resolve_method(method)
        skipped: list[dict] = []
        if items is not None:
            records, skipped = read_focus_items(items)
            source = {"items": str(items)}
        else:
            from tunelens.evaluate.datafiles import ALPACA_FILE, data_file

            path = data_file(ALPACA_FILE, data_dir)
            records = alpaca_focus_items(path, alpaca, seed=seed)
            source = {"alpaca": str(path), "n": alpaca, "seed": seed}
        kwargs = {"steps": steps} if "steps" in methods.get(method).options else {}
        doc = run_focus(model, records, out, base_spec=base, method=method, max_new_tokens=max_new_tokens, n_boot=n_boot,
                        seed=seed, own_responses=own_responses, source=source, skipped=skipped, **kwargs)
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
        from tunelens.explain.reports import gsm8k_items, prompt_items, run_rationale

        if (gsm8k is None) == (prompts is None):
            raise TunelensError("give exactly one of --gsm8k N or --prompts FILE")
        if gsm8k is not None:
            items = gsm8k_items(gsm8k, data_dir, shots=shots, seed=seed)
            source = {"gsm8k": gsm8k, "shots": shots, "seed": seed}
        else:
            items = prompt_items(prompts)
            source = {"prompts": str(prompts)}
        doc = run_rationale(model, items, out, max_new_tokens=max_new_tokens, answer_tokens=answer_tokens,
                            batch_size=batch_size, source=source)
        console.print(f"[green]rationale faithfulness[/]: {doc['n_evaluated']} of {doc['n_items']} item(s) measured -> {out}")
        console.print(f"verdict: {doc['verdict']}")


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _pair(ci: Any) -> str:
    return "n/a" if not ci or ci[0] is None else f"{ci[0]:.3f}..{ci[1]:.3f}"
