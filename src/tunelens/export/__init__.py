"""The export stage: a model or a merged LoRA adapter as a GGUF file (llama.cpp, Ollama) with an
Ollama ``Modelfile`` beside it. ``tunelens export`` is its CLI; see docs/export.md."""

from tunelens.export.gguf_export import (
    ARCHITECTURES,
    QUANTS,
    ExportResult,
    check_output,
    check_quant,
    export_gguf,
    verify_gguf,
)
from tunelens.export.modelfile import modelfile_text, write_modelfile

__all__ = [
    "ARCHITECTURES",
    "QUANTS",
    "ExportResult",
    "check_output",
    "check_quant",
    "export_gguf",
    "modelfile_text",
    "verify_gguf",
    "write_modelfile",
]
