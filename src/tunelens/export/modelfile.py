"""An Ollama ``Modelfile`` for an exported GGUF: FROM the file, the chat template in Ollama's Go
template syntax, the default system prompt, and stop parameters for the end-of-turn tokens.

A Jinja chat template cannot be translated to Go in general. What is done here works for the
templates that wrap each message in fixed text per role (ChatML, Llama 3, Zephyr and the like):
the template is rendered with marker contents, the text around each marker is read off, and the
Go template is written from those pieces. The pieces are then checked by rebuilding the rendering
of a longer conversation; a template that does not fit (content-dependent logic, tools...) gets no
TEMPLATE line, with a comment saying why, so Ollama falls back to the chat template in the GGUF.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_MARK = {"system": "\x01SYS\x01", "user": "\x01USR{}\x01", "assistant": "\x01AST{}\x01"}


@dataclass
class ChatParts:
    """The fixed text around each role's content, as the chat template writes it."""

    head: str  # text before everything (a BOS written by the template), shared by both cases below
    system_prefix: str
    system_suffix: str
    user_prefix: str
    user_suffix: str
    assistant_prefix: str
    assistant_suffix: str
    generation_prompt: str
    default_system: str | None = None


@dataclass
class ModelfileText:
    text: str
    template: str | None
    stops: list[str] = field(default_factory=list)
    note: str | None = None  # why there is no TEMPLATE, when there is none


def _render(render, messages: list[dict], gen: bool) -> str:
    return render(messages, add_generation_prompt=gen)


def _split(text: str, marks: list[str]) -> list[str] | None:
    """The pieces of ``text`` between ``marks`` (in order), or None if one is missing."""
    pieces, rest = [], text
    for mark in marks:
        before, found, after = rest.partition(mark)
        if not found:
            return None
        pieces.append(before)
        rest = after
    pieces.append(rest)
    return pieces


def chat_parts(render) -> ChatParts | None:
    """Read the per-role wrapping off a chat template; ``render(messages, add_generation_prompt)``
    renders it. None when the template is not of that kind."""
    s, u1, a1, u2 = _MARK["system"], _MARK["user"].format(1), _MARK["assistant"].format(1), _MARK["user"].format(2)
    try:
        full = _render(render, [{"role": "system", "content": s}, {"role": "user", "content": u1},
                                {"role": "assistant", "content": a1}, {"role": "user", "content": u2}], True)
        only_user = _render(render, [{"role": "user", "content": u1}], False)
        user_assistant = _render(render, [{"role": "user", "content": u1}, {"role": "assistant", "content": a1}], False)
    except Exception:  # a template that rejects these conversations (e.g. one demanding a system turn)
        return None
    p = _split(full, [s, u1, a1, u2])
    q = _split(only_user, [u1])
    r = _split(user_assistant, [u1, a1])
    if p is None or q is None or r is None:
        return None
    before_sys, sys_to_u1, u1_to_a1, a1_to_u2, after_u2 = p
    head_no_sys, user_suffix = q
    if r[0] != head_no_sys or not r[1].startswith(user_suffix):
        return None
    assistant_prefix = r[1][len(user_suffix):]
    assistant_suffix = r[2]
    if u1_to_a1 != user_suffix + assistant_prefix or not after_u2.startswith(user_suffix):
        return None
    generation_prompt = after_u2[len(user_suffix):]
    if not a1_to_u2.startswith(assistant_suffix):
        return None
    user_prefix = a1_to_u2[len(assistant_suffix):]
    if not sys_to_u1.endswith(user_prefix):
        return None
    system_suffix = sys_to_u1[: len(sys_to_u1) - len(user_prefix)]
    if not head_no_sys.endswith(user_prefix):
        return None
    lead = head_no_sys[: len(head_no_sys) - len(user_prefix)]  # what comes before the first user turn
    default_system = None
    if lead.startswith(before_sys) and lead.endswith(system_suffix) and len(lead) >= len(before_sys) + len(system_suffix) \
            and lead != "" and lead != before_sys:
        default_system = lead[len(before_sys): len(lead) - len(system_suffix)]  # the template's own system turn
        head, system_prefix = "", before_sys
    elif before_sys.startswith(lead):
        head, system_prefix = lead, before_sys[len(lead):]  # e.g. a BOS written before any turn
    else:
        return None
    return ChatParts(head=head, system_prefix=system_prefix, system_suffix=system_suffix, user_prefix=user_prefix,
                     user_suffix=user_suffix, assistant_prefix=assistant_prefix, assistant_suffix=assistant_suffix,
                     generation_prompt=generation_prompt, default_system=default_system)


def rebuild(parts: ChatParts, messages: list[dict], add_generation_prompt: bool) -> str:
    """What the Go template renders for ``messages``; used to check the pieces against Jinja."""
    out = parts.head
    system = next((m["content"] for m in messages if m["role"] == "system"), parts.default_system)
    if system is not None:
        out += parts.system_prefix + system + parts.system_suffix
    for m in messages:
        if m["role"] == "user":
            out += parts.user_prefix + m["content"] + parts.user_suffix
        elif m["role"] == "assistant":
            out += parts.assistant_prefix + m["content"] + parts.assistant_suffix
    if add_generation_prompt:
        out += parts.generation_prompt
    return out


def go_template(parts: ChatParts) -> str:
    """Ollama's template (``.System`` and ``.Messages``) for these pieces. No ``{{-`` trim markers:
    they would eat the newlines that end the pieces."""
    return (
        f"{parts.head}"
        f"{{{{ if .System }}}}{parts.system_prefix}{{{{ .System }}}}{parts.system_suffix}{{{{ end }}}}"
        "{{ range .Messages }}"
        f"{{{{ if eq .Role \"user\" }}}}{parts.user_prefix}{{{{ .Content }}}}{parts.user_suffix}"
        f"{{{{ else if eq .Role \"assistant\" }}}}{parts.assistant_prefix}{{{{ .Content }}}}{parts.assistant_suffix}"
        "{{ end }}"
        "{{ end }}"
        f"{parts.generation_prompt}"
    )


_SPECIAL = re.compile(r"<\|[^|<>\s]+\|>|</?s>|\[/?INST\]|<end_of_turn>|<start_of_turn>")


def _first_special(text: str, specials: set[str]) -> str | None:
    best = None
    for token in specials:
        at = text.find(token)
        if token and at >= 0 and (best is None or at < best[0] or (at == best[0] and len(token) > len(best[1]))):
            best = (at, token)
    if best is None:
        m = _SPECIAL.search(text)
        return m.group(0) if m else None
    return best[1]


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check(render, parts: ChatParts) -> bool:
    conversations = [
        [{"role": "user", "content": "Hi"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
         {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}],
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"},
         {"role": "assistant", "content": "d"}],
    ]
    for messages in conversations:
        # Ollama renders to generate, so the generation prompt always ends its template; an assistant
        # turn last is checked without it (templates differ on adding one after an assistant turn).
        for gen in ((True, False) if messages[-1]["role"] == "user" else (False,)):
            try:
                expected = _render(render, messages, gen)
            except Exception:
                return False
            if rebuild(parts, messages, gen) != expected:
                return False
    return True


def modelfile_text(gguf_name: str, tokenizer: Any, *, drop_bos_text: bool = False) -> ModelfileText:
    """The Modelfile for ``gguf_name`` (a file beside it) and the tokenizer it was exported with.

    ``drop_bos_text``: the GGUF tells llama.cpp to add BOS itself, so a BOS the template writes at
    the very start is left out of the Go template (or it would be doubled).
    """
    template = getattr(tokenizer, "chat_template", None)
    specials = {t for t in (getattr(tokenizer, "all_special_tokens", None) or []) if t}
    eos = getattr(tokenizer, "eos_token", None)
    lines = [f"FROM ./{gguf_name}"]
    note = None
    go = None
    stops: list[str] = []
    parts = None
    if template:
        def render(messages, add_generation_prompt):
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

        parts = chat_parts(render)
        if parts is None or not _check(render, parts):
            parts, note = None, "the chat template does not wrap each message in fixed text per role"
        elif any('"""' in piece or "{{" in piece or "}}" in piece for piece in vars(parts).values() if piece):
            parts, note = None, 'the chat template holds """ or {{ }}, which a Modelfile TEMPLATE cannot carry'
    else:
        note = "the tokenizer has no chat template"
    if parts is not None:
        if drop_bos_text and getattr(tokenizer, "bos_token", None) and parts.head.startswith(tokenizer.bos_token):
            parts.head = parts.head[len(tokenizer.bos_token):]
        go = go_template(parts)
        lines.append(f'TEMPLATE """{go}"""')
        if parts.default_system is not None:
            lines.append(f'SYSTEM """{parts.default_system}"""')
        for text in (parts.assistant_suffix, parts.user_prefix):
            token = _first_special(text, specials)
            if token and token not in stops:
                stops.append(token)
    else:
        lines.append(f"# No TEMPLATE: {note}; Ollama uses the chat template stored in the GGUF.")
    if eos and eos not in stops:
        stops.append(eos)
    lines += [f"PARAMETER stop {_quote(s)}" for s in stops]
    return ModelfileText(text="\n".join(lines) + "\n", template=go, stops=stops, note=note)


def write_modelfile(gguf_path: str | Path, tokenizer: Any, *, drop_bos_text: bool = False,
                    path: str | Path | None = None) -> tuple[Path, ModelfileText]:
    """Write ``Modelfile`` beside ``gguf_path`` (or at ``path``) and return (its path, its text)."""
    gguf_path = Path(gguf_path)
    out = Path(path) if path is not None else gguf_path.parent / "Modelfile"
    content = modelfile_text(gguf_path.name, tokenizer, drop_bos_text=drop_bos_text)
    out.write_text(content.text, encoding="utf-8")
    return out, content
