"""The explain API behind `tunelens explain`, `explain-focus`, `explain-rationale` and the pipeline's explain stage.

- inputs: ``read_prompts`` (prompts files), ``read_focus_items``, ``gsm8k_items``, ``prompt_items``,
  and the occlusion helpers ``check_granularity`` / ``attach_occlusion_spans``;
- building blocks: ``attribute_items`` (every item by every model, with heatmaps and the
  faithfulness check), ``faithfulness_document`` (the one ``faithfulness.json`` shape),
  ``greedy_responses``, ``write_json``;
- whole runs, each writing its artifacts: ``explain_prompts``, ``explain_focus``, ``explain_rationale``.

``explain/cli.py`` only parses options and calls these; the pipeline's explain stage calls the
building blocks with its own item sample and run-folder layout. Pages and charts are in ``render.py``.
"""

from __future__ import annotations

import inspect
import json
import math
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from tunelens.errors import TunelensError
from tunelens.explain import methods

console = Console(stderr=True)
ATTRIBUTIONS_SCHEMA = "tunelens.attributions/v1"
FAITHFULNESS_SCHEMA = "tunelens.faithfulness/v2"
FOCUS_SCHEMA = "tunelens.focus/v1"
RATIONALE_SCHEMA = "tunelens.rationale/v1"
GSM8K_INSTRUCTION = "Solve the problem step by step, then end with a final line of the form 'Answer: <number>'."
IG_BASELINES = ("mean", "pad", "zero")


# ---------------------------------------------------------------- shared helpers


def json_safe(obj: Any) -> Any:
    """NaN/inf -> None, recursively (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json(path: Path, doc: Any) -> Path:
    """``doc`` as indented JSON, NaN/inf written as null."""
    path.write_text(json.dumps(json_safe(doc), indent=1), encoding="utf-8")
    return path


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def greedy_responses(loaded: Any, prompts: Sequence[Any], max_new_tokens: int, *, batch_size: int | None = None,
                     progress: bool = False, backend: Any = None) -> list[str]:
    """Greedy responses of a loaded model to message lists or rendered prompt strings, in order.

    ``backend``: a ``tunelens.generate.backends.Backend`` of the same model (``response_backend``)
    that generates them instead of ``loaded`` (llama.cpp, vLLM); None or an hf backend: ``loaded``.
    """
    from tunelens.generate import GenerationParams, generate

    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0,
                              **({"batch_size": batch_size} if batch_size else {}))
    if backend is not None and backend.name != "hf":
        return [r.text for r in backend.generate(list(prompts), params, progress=progress)]
    return [r.text for r in generate(loaded.model, loaded.tokenizer, list(prompts), params, progress=progress)]


def load_explained(spec: str) -> Any:
    """The model an explanation attributes, with a PEFT adapter merged into its base.

    The merged model computes the same function as base + adapter (to float rounding), so its
    attributions, faithfulness checks and greedy responses are the adapter's; without LoRA's extra
    matmuls in every layer. Measured in the default run's explain stage on the AMD EPYC (Zen 5) host:
    see docs/benchmarks.md, "Explanation speed" (2026-12-06, third session)."""
    from tunelens.models import load_model

    return load_model(spec, merge_adapter=True)


def response_backend(spec: str, name: str, quant: str, *, say: Callable[[str], None] | None = None) -> Any:
    """The generation backend ``name`` (hf, llamacpp, vllm, auto) of model ``spec`` for the responses
    an explanation attributes, or None when that is hf: the explained model's own transformers
    weights then generate them (an adapter merged, as it is attributed). Attributions always
    need transformers (gradients); only the response text comes from here."""
    from tunelens.generate.backends import choose_backend, load_backend

    chosen, note = choose_backend(name)
    if note and say:
        say(note)
    if chosen == "hf":
        return None
    return load_backend(spec, chosen, quant=quant, progress=False, say=say)


# ---------------------------------------------------------------- inputs and method options


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


def check_granularity(method: str, granularity: str | None) -> str | None:
    """The occlusion granularity to use (word by default); None for methods without segments."""
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


def attach_occlusion_spans(items: list[dict[str, Any]]) -> None:
    """Attach each item's spans from its meta (granularity span); the first item without any is an error."""
    from tunelens.explain.occlusion import spans_from_meta

    for item in items:
        where = item.get("where", item["id"])
        item["spans"] = spans_from_meta(item["messages"], item.get("meta"), where)


def method_options(method: str, **candidates: Any) -> dict[str, Any]:
    """The command-line options (``steps=``, ``baseline=``, ``granularity=``...) that ``method`` takes.

    The commands offer a few method options as flags; each method gets the ones it accepts
    (``methods.get(method).options``) and a None value is left out.
    """
    accepted = methods.get(method).options
    return {k: v for k, v in candidates.items() if k in accepted and v is not None}


# ---------------------------------------------------------------- attributions, heatmaps, faithfulness


def numbered_heatmap(role: str, n: int) -> str:
    """``tunelens explain``'s heatmap names: heatmaps/000.png for the tuned model, heatmaps/base_000.png for the base."""
    return f"heatmaps/{'' if role == 'tuned' else role + '_'}{n:03d}.png"


@dataclass
class Attributed:
    """What ``attribute_items`` produced."""

    # One row per explained item: {id, attribution, heatmap} for the tuned model, and
    # {<role>_attribution, <role>_heatmap} for each other model (Attribution objects, paths relative to ``out``).
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {id, model, reason}
    faithfulness: list[dict[str, Any]] = field(default_factory=list)  # {id, **faithfulness()} of the tuned model


def attribute_items(
    models: Sequence[tuple[str, Any]], items: list[dict[str, Any]], *, method: str = methods.DEFAULT,
    options: dict[str, Any] | None = None, exclude_template: bool = False, max_new_tokens: int = 64,
    out: Path | None = None, heatmap_name: Callable[[str, int], str] = numbered_heatmap,
    faithfulness_options: dict[str, Any] | None = None, skip_errors: bool = True,
    on_item: Callable[[str, int, dict], None] | None = None,
) -> Attributed:
    """Attribute every item with every model; heatmaps under ``out``; the faithfulness check on the tuned model.

    ``models`` are (role, LoadedModel) pairs, one role "tuned". An item's response is its
    ``responses[role]``, else its ``response``, else the model's greedy response; its ``spans``
    (``attach_occlusion_spans``) go to occlusion over spans. With ``skip_errors`` an item a model
    cannot explain (too long, empty generation) is listed in ``skipped`` and left out for every
    model; otherwise the error is raised. ``faithfulness_options`` (None: no check) go to
    ``faithfulness()``. ``on_item(role, n, item)`` is called before each attribution.
    """
    from tunelens.explain.attribution import attribute
    from tunelens.explain.faithfulness import faithfulness
    from tunelens.explain.render import save_heatmap_png

    options = options or {}
    result = Attributed()
    rows: list[dict[str, Any]] = [{"id": it["id"]} for it in items]
    failed: set[int] = set()
    faith: dict[int, dict] = {}
    for role, loaded in models:
        prefix = "" if role == "tuned" else f"{role}_"
        for n, item in enumerate(items):
            if on_item is not None:
                on_item(role, n, item)
            if n in failed:
                continue
            response = (item.get("responses") or {}).get(role, item.get("response"))
            item_options = {**options, "spans": item["spans"]} if item.get("spans") is not None else options
            try:
                attr = attribute(loaded.model, loaded.tokenizer, item["messages"], response, method,
                                 exclude_template=exclude_template, max_new_tokens=max_new_tokens, **item_options)
            except TunelensError as exc:
                if not skip_errors:
                    raise
                # One bad prompt must not sink the batch; it is listed with its reason.
                failed.add(n)
                result.skipped.append({"id": item["id"], "model": role, "reason": str(exc)})
                continue
            rows[n][f"{prefix}attribution"] = attr
            if out is not None:
                name = heatmap_name(role, n)
                save_heatmap_png(attr, out / name)
                rows[n][f"{prefix}heatmap"] = name
            if faithfulness_options is not None and role == "tuned":
                faith[n] = {"id": item["id"], **faithfulness(loaded.model, loaded.tokenizer, attr, **faithfulness_options)}
    result.rows = [row for n, row in enumerate(rows) if n not in failed]
    result.faithfulness = [faith[n] for n in sorted(faith) if n not in failed]
    return result


def faithfulness_document(method: str, rows: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    """``faithfulness.json`` (``tunelens.faithfulness/v2``): the per-item checks of one method, and which failed.

    ``options`` are those given to ``faithfulness()``; the document records them with its defaults filled in.
    """
    from tunelens.explain.faithfulness import faithfulness

    defaults = inspect.signature(faithfulness).parameters
    flagged = [r["id"] for r in rows if not r["better_than_random"]]
    return {
        "schema": FAITHFULNESS_SCHEMA,
        "method": method,
        "params": {k: options.get(k, defaults[k].default) for k in ("ks", "n_random", "seed")},
        "n_items": len(rows),
        "n_better_than_random": len(rows) - len(flagged),
        "not_better_than_random": flagged,
        "items": rows,
    }


def rank_training_examples(train_run: Path, rows: list[dict[str, Any]], *, tda_method: str = "gradient",
                           top_k: int = 10, on_item: Callable[[], None] | None = None) -> dict[str, Any]:
    """``tda.json``: the top-k training examples of run ``train_run`` for each row's tuned response."""
    from tunelens.explain.tda import load_run, train_attribution

    doc: dict[str, Any] = {"run": str(train_run), "method": tda_method, "items": [], "skipped": []}
    run_model, run_tok, run_records, run_info = load_run(train_run)  # once for all prompts
    for row in rows:
        notes: dict[str, Any] = {}
        attr = row["attribution"]
        top = train_attribution((run_model, run_tok, run_records), attr.messages, attr.response, k=top_k,
                                method=tda_method, notes=notes, max_length=run_info.get("max_length"),
                                cache_dir=train_run / "explain_cache", progress=True)
        doc["items"].append({"id": row["id"], "response": attr.response, "top": top})
        doc["skipped"] = notes.get("skipped", [])
        if on_item is not None:
            on_item()
    return doc


def explain_prompts(
    model_spec: str, items: list[dict], out: Path, *, method: str = methods.DEFAULT, base_spec: str | None = None,
    train_run: Path | None = None, tda_method: str = "gradient", top_k: int = 10, exclude_template: bool = False,
    max_new_tokens: int = 64, steps: int = 16, check_faithfulness: bool = True, n_random: int = 8,
    ig_baseline: str = "mean", granularity: str | None = None,
) -> dict[str, Any]:
    """Everything ``tunelens explain`` writes; returns a summary {items, skipped, written, flagged}.

    ``steps`` / ``ig_baseline`` / ``granularity`` go to the methods that take them (integrated
    gradients, occlusion); with granularity span, each item carries ``spans`` (``attach_occlusion_spans``).
    """
    from rich.progress import Progress

    from tunelens.explain.render import render_diff_html, render_html

    method = methods.resolve(method)
    granularity = check_granularity(method, granularity)
    if ig_baseline not in IG_BASELINES:
        raise TunelensError(f"--ig-baseline must be {', '.join(IG_BASELINES[:-1])} or {IG_BASELINES[-1]}, got {ig_baseline!r}")
    options = method_options(method, steps=steps, baseline=ig_baseline, granularity=granularity)
    out.mkdir(parents=True, exist_ok=True)
    (out / "heatmaps").mkdir(exist_ok=True)
    models = [("tuned", load_explained(model_spec))]
    if base_spec:
        models.append(("base", load_explained(base_spec)))
    faith_options = {"n_random": n_random} if check_faithfulness else None
    with Progress(console=console, transient=True) as progress:
        tasks: dict[str, Any] = {}

        def advance(role: str, n: int, item: dict) -> None:
            if role not in tasks:
                tasks[role] = progress.add_task(f"{method} on {role} model", total=len(items))
            progress.advance(tasks[role])

        done = attribute_items(models, items, method=method, options=options, exclude_template=exclude_template,
                               max_new_tokens=max_new_tokens, out=out, faithfulness_options=faith_options, on_item=advance)
        for row in done.skipped:
            console.print(f"[yellow]skipped {row['id']} ({row['model']} model): {row['reason']}[/]")
        if not done.rows:
            raise TunelensError(f"no prompt could be explained; first reason: {done.skipped[0]['reason']}")
        tda = None
        if train_run is not None:
            task = progress.add_task("training-data attribution", total=len(done.rows))
            tda = rank_training_examples(train_run, done.rows, tda_method=tda_method, top_k=top_k,
                                         on_item=lambda: progress.advance(task))

    doc = {
        "schema": ATTRIBUTIONS_SCHEMA,
        "created": _now(),
        "model": {"spec": model_spec, "id": models[0][1].model_id},
        "base_model": {"spec": base_spec, "id": models[1][1].model_id} if base_spec else None,
        "method": method,
        "granularity": granularity,
        "exclude_template": exclude_template,
        "skipped": done.skipped,
        "items": [{k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in row.items()} for row in done.rows],
    }
    (out / "attributions.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    attrs = [row["attribution"] for row in done.rows]
    (out / "attributions.html").write_text(render_html(attrs, title=f"tunelens explain: {model_spec}"), encoding="utf-8")
    written = ["attributions.json", "attributions.html", "heatmaps/"]
    if base_spec:
        pairs = [(row["base_attribution"], row["attribution"]) for row in done.rows]
        (out / "diff.html").write_text(render_diff_html(pairs, base_label=base_spec, tuned_label=model_spec), encoding="utf-8")
        written.append("diff.html")
    summary: dict[str, Any] = {"items": len(done.rows), "skipped": len(done.skipped), "written": written}
    if faith_options is not None:
        faith_doc = faithfulness_document(method, done.faithfulness, **faith_options)
        write_json(out / "faithfulness.json", faith_doc)
        written.append("faithfulness.json")
        summary["flagged"] = faith_doc["not_better_than_random"]
    if tda is not None:
        (out / "tda.json").write_text(json.dumps(tda, indent=1), encoding="utf-8")
        written.append("tda.json")
    return summary


# ---------------------------------------------------------------- instruction focus


def read_focus_items(path: Path) -> tuple[list[dict], list[dict]]:
    """Conversation records with meta.instruction_span and meta.context_span; (usable, skipped).

    A record lacking either span (a suite item with no context) is skipped with the reason; a
    malformed span is an error naming the line.
    """
    from tunelens.explain.focus import _split_item
    from tunelens.records import iter_jsonl_numbered

    if not path.is_file():
        raise TunelensError(f"items file not found: {path}")
    items, skipped = [], []
    try:
        for n, obj in iter_jsonl_numbered(path):
            where = f"{path}:{n}"
            meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
            missing = [k for k in ("instruction_span", "context_span") if meta.get(k) is None]
            item_id = str(obj.get("id", f"{path.name}:{n}"))
            if missing:
                skipped.append({"id": item_id, "reason": f"{where}: no meta.{' or meta.'.join(missing)}"})
                continue
            _split_item(obj, where)  # raises on malformed messages or spans
            items.append({**obj, "id": item_id})
    except ValueError as exc:
        raise TunelensError(str(exc)) from None
    if not items:
        raise TunelensError(
            f"{path}: no record carries both meta.instruction_span and meta.context_span "
            f"({len(skipped)} line(s) without them); use suite records with context or --alpaca N"
        )
    return items, skipped


def explain_focus(
    model_spec: str, items: list[dict], out: Path, *, base_spec: str | None = None, method: str = methods.DEFAULT,
    max_new_tokens: int = 32, n_boot: int = 2000, seed: int = 0, own_responses: bool = False,
    source: dict[str, Any] | None = None, skipped: list[dict] | None = None, **method_kwargs: Any,
) -> dict[str, Any]:
    """Instruction focus of the tuned (and base) model; writes focus.json, focus.png, focus.html."""
    from tunelens.explain.focus import instruction_focus, paired_focus_difference
    from tunelens.explain.render import focus_chart, focus_html

    method = methods.resolve(method)
    if own_responses:
        items = [{**it, "messages": [m for m in it["messages"] if m.get("role") != "assistant"]} for it in items]
    out.mkdir(parents=True, exist_ok=True)
    roles = [("tuned", model_spec)] + ([("base", base_spec)] if base_spec else [])
    results: dict[str, dict] = {}
    ids: dict[str, str] = {}
    for role, spec in roles:
        loaded = load_explained(spec)
        ids[role] = loaded.model_id
        console.print(f"instruction focus of the {role} model ({spec}) on {len(items)} item(s)")
        results[role] = instruction_focus(loaded.model, loaded.tokenizer, items, method, max_new_tokens=max_new_tokens,
                                          n_boot=n_boot, seed=seed, progress=True, skip_errors=True, **method_kwargs)
        del loaded
        if results[role]["n"] == 0:
            first = results[role]["skipped"][0]["reason"] if results[role]["skipped"] else "no share could be computed"
            raise TunelensError(f"no item could be explained by the {role} model ({spec}); first reason: {first}")
    doc: dict[str, Any] = {
        "schema": FOCUS_SCHEMA,
        "created": _now(),
        "model": {"spec": model_spec, "id": ids["tuned"]},
        "base_model": {"spec": base_spec, "id": ids["base"]} if base_spec else None,
        "method": method,
        "params": {"max_new_tokens": max_new_tokens, "n_boot": n_boot, "seed": seed, "own_responses": own_responses,
                   **method_kwargs},
        "source": source or {},
        "n_items": len(items),
        "skipped": list(skipped or []),
        "tuned": results["tuned"],
        "base": results.get("base"),
        "difference": paired_focus_difference(results["base"], results["tuned"], n_boot, seed) if base_spec else None,
    }
    doc = json_safe(doc)
    write_json(out / "focus.json", doc)
    png = focus_chart(doc, out / "focus.png")
    (out / "focus.html").write_text(focus_html(doc, png), encoding="utf-8")
    return doc


# ---------------------------------------------------------------- rationale faithfulness


def gsm8k_items(n: int, data_dir: Path | None = None, *, shots: int = 0, seed: int = 0) -> list[dict]:
    """N GSM8K test questions (seeded sample) asking for reasoning then 'Answer: N'; k worked train exemplars first."""
    from tunelens.evaluate import datafiles as df
    from tunelens.evaluate.gsm8k import reference_answer

    test = df.read_jsonl(df.data_file(df.GSM8K_TEST_FILE, data_dir))
    if not test:
        raise TunelensError(f"{df.GSM8K_TEST_FILE} holds no rows")
    prefix: list[dict] = []
    if shots:
        train = df.read_jsonl(df.data_file(df.GSM8K_TRAIN_FILE, data_dir))
        if shots > len(train):
            raise TunelensError(f"--shots {shots} exceeds the {len(train)} rows of {df.GSM8K_TRAIN_FILE}")
        for ex in random.Random(seed).sample(train, shots):
            body, final = ex["answer"].split("####")
            body = re.sub(r"<<[^>]*>>", "", body).strip()
            prefix += [{"role": "user", "content": f"{ex['question']}\n\n{GSM8K_INSTRUCTION}"},
                       {"role": "assistant", "content": f"{body}\nAnswer: {final.strip()}"}]
    picked = sorted(random.Random(seed + 1).sample(range(len(test)), min(n, len(test))))
    items = []
    for i in picked:
        row = test[i]
        if not isinstance(row.get("question"), str):
            raise TunelensError(f"{df.GSM8K_TEST_FILE} row {i + 1}: no 'question' string")
        items.append({"id": f"gsm8k:{i}", "reference": _reference(row, reference_answer),
                      "messages": prefix + [{"role": "user", "content": f"{row['question']}\n\n{GSM8K_INSTRUCTION}"}]})
    return items


def _reference(row: dict, parse) -> str | None:
    try:
        return parse(row["answer"])
    except (KeyError, ValueError):
        return None


def prompt_items(path: Path) -> list[dict]:
    """Rationale items from a --prompts file (see ``read_prompts``): the response, when given, is kept."""
    return [{"id": it["id"], "messages": it["messages"] + ([{"role": "assistant", "content": it["response"]}]
                                                         if it["response"] is not None else [])}
            for it in read_prompts(path)]


def explain_rationale(
    model_spec: str, items: list[dict], out: Path, *, max_new_tokens: int = 256, answer_tokens: int = 12,
    batch_size: int = 8, source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """rationale_faithfulness on ``items``; writes rationale.json, rationale.png, rationale.html."""
    from tunelens.explain.rationale import rationale_faithfulness
    from tunelens.explain.render import rationale_chart, rationale_html

    loaded = load_explained(model_spec)
    out.mkdir(parents=True, exist_ok=True)
    calls = iter(["responses", "early answers", "inserted errors", "forced answers"])
    needs_responses = any(it["messages"][-1]["role"] != "assistant" for it in items)
    if not needs_responses:
        next(calls)

    def generator(prompts: list[str], n_tokens: int) -> list[str]:
        console.print(f"generating {next(calls, 'completions')}: {len(prompts)} prompt(s)")
        return greedy_responses(loaded, prompts, n_tokens, batch_size=batch_size, progress=True)

    measured = rationale_faithfulness(loaded.model, loaded.tokenizer, items, max_new_tokens=max_new_tokens,
                                      answer_tokens=answer_tokens, generator=generator)
    references = {it["id"]: it.get("reference") for it in items}
    for entry in measured["items"]:
        ref = references.get(entry["id"])
        if ref is not None:
            entry["reference"] = float(ref)
            entry["correct"] = entry["final_answer"] == float(ref)
    doc = json_safe({
        "schema": RATIONALE_SCHEMA,
        "created": _now(),
        "model": {"spec": model_spec, "id": loaded.model_id},
        "params": {"max_new_tokens": max_new_tokens, "answer_tokens": answer_tokens},
        "source": source or {},
        **measured,
    })
    write_json(out / "rationale.json", doc)
    png = rationale_chart(doc, out / "rationale.png")
    (out / "rationale.html").write_text(rationale_html(doc, png), encoding="utf-8")
    return doc
