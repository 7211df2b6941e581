"""The Ollama Modelfile written beside an exported GGUF: FROM the file, the chat template as an
Ollama Go template that renders what the Jinja template renders, the default system prompt, and
stop parameters for the end-of-turn tokens.

No Go or Ollama here, so the Go template is run by a small interpreter of the part of Go's
text/template syntax it uses (text, ``{{ if }}/{{ else if }}/{{ else }}/{{ end }}``, ``range``,
``eq``, fields, and the ``{{-``/``-}}`` trim markers), with Ollama's inputs: ``.System`` is the
request's system message or else the Modelfile's SYSTEM, ``.Messages`` every message.
"""

from __future__ import annotations

import re

import pytest

CONVERSATIONS = [
    [{"role": "user", "content": "Hi there"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}],
    [{"role": "system", "content": "S"}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
     {"role": "user", "content": "Multi\nline\n\n  text "}],
]

# ------------------------------------------------------------------ a tiny Go template runner

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def _lex(template: str) -> list[tuple[str, str]]:
    out, pos, trim_next = [], 0, False
    for m in _ACTION.finditer(template):
        text = template[pos:m.start()]
        if trim_next:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        out.append(("text", text))
        out.append(("action", m.group(2)))
        trim_next = bool(m.group(3))
        pos = m.end()
    tail = template[pos:]
    out.append(("text", tail.lstrip() if trim_next else tail))
    return out


def _parse(tokens, i=0, stop=("end",)):
    """Nodes until an action in ``stop``; returns (nodes, index of that action)."""
    nodes = []
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "text":
            nodes.append(("text", value))
            i += 1
            continue
        head = value.split()[0] if value else ""
        if value == "end" or value == "else" or value.startswith("else if"):
            if head in stop or value.startswith("else"):
                return nodes, i
            raise AssertionError(f"unexpected {{{{ {value} }}}}")
        if head == "if":
            branches, else_body = [], []
            cond = value[3:]
            body, i = _parse(tokens, i + 1, stop=("end", "else"))
            branches.append((cond, body))
            while tokens[i][1].startswith("else if"):
                cond = tokens[i][1][len("else if "):]
                body, i = _parse(tokens, i + 1, stop=("end", "else"))
                branches.append((cond, body))
            if tokens[i][1] == "else":
                else_body, i = _parse(tokens, i + 1, stop=("end",))
            assert tokens[i][1] == "end"
            nodes.append(("if", branches, else_body))
            i += 1
        elif head == "range":
            body, i = _parse(tokens, i + 1, stop=("end",))
            assert tokens[i][1] == "end"
            nodes.append(("range", value[len("range "):], body))
            i += 1
        else:
            nodes.append(("value", value))
            i += 1
    return nodes, i


def _get(expr: str, dot: dict, root: dict):
    expr = expr.strip()
    if expr.startswith('"'):
        return expr.strip('"')
    if expr.startswith("$."):
        return root[expr[2:]]
    if expr.startswith("."):
        return dot.get(expr[1:], "")
    raise AssertionError(f"cannot evaluate {expr!r}")


def _cond(expr: str, dot: dict, root: dict) -> bool:
    parts = re.findall(r'"[^"]*"|\S+', expr)
    if parts[0] == "eq":
        return _get(parts[1], dot, root) == _get(parts[2], dot, root)
    if parts[0] == "not":
        return not _cond(" ".join(parts[1:]), dot, root)
    assert len(parts) == 1, expr
    return bool(_get(parts[0], dot, root))


def _run(nodes, dot: dict, root: dict) -> str:
    out = []
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "value":
            out.append(str(_get(node[1], dot, root)))
        elif node[0] == "if":
            for cond, body in node[1]:
                if _cond(cond, dot, root):
                    out.append(_run(body, dot, root))
                    break
            else:
                out.append(_run(node[2], dot, root))
        elif node[0] == "range":
            for item in _get(node[1], dot, root):
                out.append(_run(node[2], item, root))
    return "".join(out)


def go_render(template: str, messages: list[dict], default_system: str | None) -> str:
    """What Ollama renders for a chat request with these messages."""
    system = next((m["content"] for m in messages if m["role"] == "system"), default_system)
    root = {"System": system or "", "Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages]}
    nodes, _ = _parse(_lex(template))
    return _run(nodes, root, root)


def test_the_go_runner_honours_trim_markers():
    assert go_render("a \n{{- if .System }}[{{ .System }}]{{ end -}}\n b", [], "s") == "a[s]b"
    assert go_render('{{ range .Messages }}{{ if eq .Role "user" }}U:{{ .Content }}{{ else }}X{{ end }}{{ end }}',
                     [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], None) == "U:hiX"


# ----------------------------------------------------------------------------- Modelfile

def _parse_modelfile(text: str) -> dict:
    out = {"PARAMETER stop": []}
    m = re.search(r'^FROM (.+)$', text, re.M)
    out["FROM"] = m.group(1) if m else None
    for key in ("TEMPLATE", "SYSTEM"):
        m = re.search(rf'^{key} """(.*?)"""$', text, re.M | re.S)
        out[key] = m.group(1) if m else None
    out["PARAMETER stop"] = [s.encode().decode("unicode_escape") for s in re.findall(r'^PARAMETER stop "(.*)"$', text, re.M)]
    return out


@pytest.fixture(scope="module")
def tokenizer():
    from tunelens.models import load_tokenizer

    return load_tokenizer("tiny-random")


def _with_template(tokenizer, template: str):
    import copy

    tok = copy.deepcopy(tokenizer)
    tok.chat_template = template
    return tok


def _assert_renders_like_jinja(tok, parsed: dict) -> None:
    for messages in CONVERSATIONS:
        want = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert go_render(parsed["TEMPLATE"], messages, parsed["SYSTEM"]) == want, messages


def test_smollm2_template(tokenizer):
    from tunelens.export import modelfile_text

    content = modelfile_text("model.q8_0.gguf", tokenizer)
    parsed = _parse_modelfile(content.text)
    assert parsed["FROM"] == "./model.q8_0.gguf"
    assert parsed["TEMPLATE"].startswith("{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}")
    assert parsed["TEMPLATE"].endswith("<|im_start|>assistant\n")
    assert parsed["SYSTEM"] == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert parsed["PARAMETER stop"][0] == "<|im_end|>"  # the end-of-turn token first
    assert set(parsed["PARAMETER stop"]) == {"<|im_end|>", "<|im_start|>"}
    _assert_renders_like_jinja(tokenizer, parsed)


def test_chatml_without_a_default_system(tokenizer):
    from tunelens.export import modelfile_text
    from tunelens.models import CHATML_TEMPLATE

    tok = _with_template(tokenizer, CHATML_TEMPLATE)
    parsed = _parse_modelfile(modelfile_text("m.gguf", tok).text)
    assert parsed["SYSTEM"] is None
    _assert_renders_like_jinja(tok, parsed)
    # no system message and no SYSTEM: no system turn, as in Jinja
    assert go_render(parsed["TEMPLATE"], CONVERSATIONS[0], None) == "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"


def test_a_template_with_a_leading_bos_and_headers(tokenizer):
    """Llama-3 style: a BOS written once at the start, role headers, an end-of-turn token."""
    from tunelens.export import modelfile_text

    template = ("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
                "'<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}{% endfor %}"
                "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
    tok = _with_template(tokenizer, template)
    content = modelfile_text("m.gguf", tok)
    parsed = _parse_modelfile(content.text)
    assert parsed["TEMPLATE"].startswith(tok.bos_token + "{{ if .System }}")
    _assert_renders_like_jinja(tok, parsed)
    assert parsed["PARAMETER stop"][0] == "<|eot_id|>"
    # when llama.cpp adds BOS itself (tokenizer.ggml.add_bos_token), the template must not write it again
    dropped = _parse_modelfile(modelfile_text("m.gguf", tok, drop_bos_text=True).text)
    assert dropped["TEMPLATE"] == parsed["TEMPLATE"][len(tok.bos_token):]


def test_a_template_it_cannot_translate_gets_no_TEMPLATE(tokenizer):
    from tunelens.export import modelfile_text

    tok = _with_template(tokenizer, "{% for m in messages %}{% if m['content'] | length > 3 %}LONG {% endif %}"
                                    "{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
    content = modelfile_text("m.gguf", tok)
    assert content.template is None
    assert _parse_modelfile(content.text)["TEMPLATE"] is None
    assert "# No TEMPLATE:" in content.text and "fixed text per role" in content.text
    assert _parse_modelfile(content.text)["PARAMETER stop"] == [tok.eos_token]


def test_export_writes_the_modelfile_beside_the_file(tmp_path, tokenizer):
    from tunelens.export import export_gguf

    result = export_gguf("tiny-random", tmp_path / "out" / "tiny.f16.gguf", quant="f16")
    assert result.modelfile == tmp_path / "out" / "Modelfile"
    parsed = _parse_modelfile(result.modelfile.read_text(encoding="utf-8"))
    assert parsed["FROM"] == "./tiny.f16.gguf"
    assert (result.modelfile.parent / parsed["FROM"]).resolve() == result.path.resolve()
    _assert_renders_like_jinja(tokenizer, parsed)
    assert not export_gguf("tiny-random", tmp_path / "b" / "t.gguf", modelfile=False).modelfile
    assert not (tmp_path / "b" / "Modelfile").exists()
