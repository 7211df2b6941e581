"""CLI for the export stage: ``tunelens export --format gguf``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

FORMATS = ("gguf",)


def export_command(
    model: str = typer.Argument(..., help="Model or adapter: hub id, local HF dir, PEFT adapter dir, .gguf, "
                                          "smollm2-135m or tiny-random."),
    output: Path = typer.Option(None, "--output", "-o", help="The .gguf file to write (a Modelfile goes beside it)."),
    fmt: str = typer.Option("gguf", "--format", "-f", help="Export format: gguf."),
    quant: str = typer.Option("f16", "--quant", "-q", help="f32, f16, q8_0 or q4_k_m (q4_k_m needs llama-cpp-python)."),
    name: str = typer.Option(None, "--name", help="general.name in the file (default: from the model)."),
    tokenizer_pre: str = typer.Option(None, "--tokenizer-pre",
                                      help="llama.cpp pre-tokenizer name, when it cannot be detected (e.g. llama-bpe)."),
    modelfile: bool = typer.Option(True, "--modelfile/--no-modelfile", help="Write an Ollama Modelfile beside the file."),
    verify: bool = typer.Option(False, "--verify", help="Load the file back with transformers and report its logit error."),
) -> None:
    """Export a model, or a LoRA adapter merged into its base, for llama.cpp and Ollama."""
    from tunelens.errors import ConfigError
    from tunelens.export.gguf_export import export_gguf

    if fmt.lower() not in FORMATS:
        raise ConfigError(f"unknown --format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if output is None:
        raise ConfigError("give the file to write with -o/--output (e.g. -o model.gguf)")
    console = Console(stderr=True)
    console.print(f"[cyan]exporting {model} to {output} ({quant})[/]")
    result = export_gguf(model, output, quant=quant, modelfile=modelfile, name=name, tokenizer_pre=tokenizer_pre,
                         verify=verify)
    size_mb = result.size_bytes / 2**20
    console.print(f"[green]done:[/] {result.path} ({result.architecture}, {result.quant}, {size_mb:.1f} MiB, "
                  f"{len(result.tensor_types)} tensors, {result.seconds:.1f} s); tokenizer {result.vocab_origin}")
    if result.adapter:
        console.print(f"merged adapter: {result.adapter}")
    if result.modelfile:
        console.print(f"Modelfile: {result.modelfile}  (ollama create NAME -f {result.modelfile})")
    for line in result.fallbacks:
        console.print(f"[yellow]kept in another type:[/] {line}")
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    if result.verify:
        v = result.verify
        console.print(f"verify: logits rel. error {v['rel_norm']:.2e} (norm), {v['rel_max']:.2e} (max); "
                      f"greedy tokens agree at {v['greedy_agree']:.0%} of {v['tokens']} positions")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the root app."""
    app.command("export", help="Export a model or merged adapter as GGUF (llama.cpp, Ollama) with a Modelfile.")(
        export_command
    )
