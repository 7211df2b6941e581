"""``tunelens export`` as a user runs it: bad input gives one clear message and exit code 2,
never a traceback; a good run writes the file and the Modelfile and says what it did."""

from __future__ import annotations

import os

import pytest

from _cli import cli


def said(err: str, text: str) -> bool:
    """``text`` is in the message, wherever rich wrapped it."""
    return "".join(text.split()) in "".join(err.split())


def test_missing_model(monkeypatch, capsys, tmp_path):
    code, _, err = cli(monkeypatch, capsys, "export", str(tmp_path / "no-such-model"), "-o", str(tmp_path / "o" / "m.gguf"))
    assert code == 2 and said(err, f"model path does not exist: {tmp_path / 'no-such-model'}")
    assert not (tmp_path / "o").exists()  # nothing created for a model that is not there


def test_unknown_quant(monkeypatch, capsys, tmp_path):
    code, _, err = cli(monkeypatch, capsys, "export", "tiny-random", "--quant", "q5_k", "-o", str(tmp_path / "m.gguf"))
    assert code == 2 and said(err, "unknown --quant 'q5_k': choose one of f32, f16, q8_0, q4_k_m")


def test_unknown_format(monkeypatch, capsys, tmp_path):
    code, _, err = cli(monkeypatch, capsys, "export", "tiny-random", "--format", "onnx", "-o", str(tmp_path / "m.gguf"))
    assert code == 2 and said(err, "unknown --format 'onnx': choose one of gguf")


def test_no_output(monkeypatch, capsys):
    code, _, err = cli(monkeypatch, capsys, "export", "tiny-random")
    assert code == 2 and said(err, "give the file to write with -o/--output")


def test_output_folder_cannot_be_created(monkeypatch, capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, _, err = cli(monkeypatch, capsys, "export", "tiny-random", "-o", str(blocker / "m.gguf"))
    assert code == 2 and said(err, f"cannot create the output directory {blocker}")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_output_folder_not_writable(monkeypatch, capsys, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        code, _, err = cli(monkeypatch, capsys, "export", "tiny-random", "-o", str(folder / "m.gguf"))
    finally:
        folder.chmod(0o700)
    assert code == 2 and said(err, f"output directory {folder} is not writable")


def test_output_folder_not_writable_as_any_user(monkeypatch, capsys, tmp_path):
    """The same message when the write test fails for any reason (here: a read-only file system)."""
    import tempfile

    def refuse(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    code, _, err = cli(monkeypatch, capsys, "export", "tiny-random", "-o", str(tmp_path / "m.gguf"))
    assert code == 2 and said(err, f"output directory {tmp_path} is not writable: Read-only file system")


def test_output_is_a_directory_or_not_gguf(monkeypatch, capsys, tmp_path):
    code, _, err = cli(monkeypatch, capsys, "export", "tiny-random", "-o", str(tmp_path))
    assert code == 2 and said(err, "is a directory; give a file name ending in .gguf")
    code, _, err = cli(monkeypatch, capsys, "export", "tiny-random", "-o", str(tmp_path / "model.bin"))
    assert code == 2 and said(err, "must be a file name ending in .gguf")


def test_adapter_without_base(monkeypatch, capsys, tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    code, _, err = cli(monkeypatch, capsys, "export", str(adapter), "-o", str(tmp_path / "m.gguf"))
    assert code == 2 and said(err, "names no base model")


def test_unsupported_architecture(monkeypatch, capsys, tmp_path):
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from tunelens.models import resolve_model

    tiny, _, _ = resolve_model("tiny-random", progress=False)
    tok = AutoTokenizer.from_pretrained(str(tiny))
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2)).save_pretrained(tmp_path / "g")
    tok.save_pretrained(tmp_path / "g")
    code, _, err = cli(monkeypatch, capsys, "export", str(tmp_path / "g"), "-o", str(tmp_path / "g.gguf"))
    assert code == 2 and said(err, "GGUF export does not support the architecture 'gpt2'")


def test_export_runs(monkeypatch, capsys, tmp_path):
    out = tmp_path / "models" / "tiny.q8_0.gguf"
    code, _, err = cli(monkeypatch, capsys, "export", "tiny-random", "--format", "gguf", "--quant", "q8_0",
                       "-o", str(out), "--verify")
    assert code == 0, err
    assert out.read_bytes()[:4] == b"GGUF"
    assert (out.parent / "Modelfile").read_text().startswith("FROM ./tiny.q8_0.gguf\n")
    assert said(err, "done:") and said(err, "(llama, q8_0,") and said(err, "verify: logits rel. error")
    assert sorted(p.name for p in out.parent.iterdir()) == ["Modelfile", "tiny.q8_0.gguf"]
