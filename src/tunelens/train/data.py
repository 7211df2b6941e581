"""Training data: read records, tokenise, apply the length policy, account for every drop."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelens.errors import TunelensError, check_input_file, describe_not_utf8
from tunelens.records import iter_jsonl, parse_record
from tunelens.train.masking import assistant_char_spans, encode_for_sft


RECORDS_FILE = "a records JSONL file (UTF-8 text; `tunelens data import` converts other formats)"


@dataclass
class PreparedData:
    rows: list[dict[str, Any]]
    total: int = 0
    truncated: int = 0
    dropped: list[dict[str, Any]] = field(default_factory=list)  # {"id", "source_file", "reason"}

    def stats(self) -> dict[str, int]:
        return {"examples_total": self.total, "examples_used": len(self.rows),
                "examples_truncated": self.truncated, "examples_dropped": len(self.dropped)}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def check_data_file(name: str | Path) -> Path:
    """The path of a training data file, or an error naming it: missing, a directory, binary."""
    # decompress=False: iter_jsonl reads the bytes as they are, .gz or not
    return check_input_file(Path(name), expected=RECORDS_FILE, not_found="data file not found: {path}",
                            decompress=False)


def read_training_records(paths: list[str], kind: str) -> list[tuple[str, dict[str, Any]]]:
    """(source file, record dict) for every record; a bad line or a wrong kind is an error naming it."""
    if not paths:
        raise TunelensError("no training data: pass --data FILE (records JSONL from `tunelens data curate`)")
    out = []
    for name in paths:
        path = check_data_file(name)
        try:
            for i, obj in enumerate(iter_jsonl(path), 1):
                try:
                    record = parse_record(obj).model_dump(mode="json")
                except Exception as exc:  # pydantic ValidationError
                    raise TunelensError(f"{path}: record {i} is not a valid record: {exc}") from None
                if record["kind"] != kind:
                    method = "sft" if kind == "conversation" else "dpo"
                    raise TunelensError(
                        f"{path}: record {i} is a {record['kind']} record; --method {method} needs {kind} records"
                    )
                out.append((str(path), record))
        except UnicodeDecodeError:  # a ValueError too, but its message names neither file nor place
            raise TunelensError(describe_not_utf8(path, RECORDS_FILE, decompress=False)) from None
        except ValueError as exc:  # iter_jsonl: invalid JSON, with file:line
            raise TunelensError(str(exc)) from None
    if not out:
        raise TunelensError(f"the data files hold no records: {', '.join(paths)}")
    return out


def check_prompt_rendering(tokenizer: Any, messages: list[dict]) -> None:
    """Fail loudly when training would see a different prompt than inference renders."""
    from tunelens.generate import render_prompt

    _, _, prompts = assistant_char_spans(tokenizer, messages)
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    for i, train_prompt in zip(turns, prompts):
        infer_prompt = render_prompt(tokenizer, messages[:i])
        if train_prompt != infer_prompt:
            raise TunelensError(
                "the chat template renders the prompt differently in training and in inference "
                f"(assistant turn {i}):\n  training:  {train_prompt[-200:]!r}\n  inference: {infer_prompt[-200:]!r}"
            )


def prepare_sft(tokenizer: Any, paths: list[str], max_length: int, policy: str) -> PreparedData:
    records = read_training_records(paths, "conversation")
    data = PreparedData(rows=[], total=len(records))
    no_assistant = 0
    min_prompt = None
    checked: set[tuple[str, ...]] = set()  # one rendering check per role sequence (e.g. with/without system)
    for source, rec in records:
        messages = rec["messages"]
        if not any(m["role"] == "assistant" for m in messages):
            no_assistant += 1
            data.dropped.append({"id": rec["id"], "source_file": source, "reason": "no assistant turn"})
            continue
        roles = tuple(m["role"] for m in messages)
        if roles not in checked:
            check_prompt_rendering(tokenizer, messages)
            checked.add(roles)
        enc = encode_for_sft(tokenizer, messages, max_length=max_length if policy == "truncate" else None)
        min_prompt = enc["prompt_length"] if min_prompt is None else min(min_prompt, enc["prompt_length"])
        if enc["length"] > max_length and policy == "drop":
            data.dropped.append({"id": rec["id"], "source_file": source,
                                 "reason": f"length {enc['length']} > max_length {max_length} (length_policy=drop)"})
            continue
        if enc["num_supervised"] == 0:
            data.dropped.append({"id": rec["id"], "source_file": source,
                                 "reason": f"prompt of {enc['prompt_length']} tokens leaves no assistant token "
                                           f"within max_length {max_length}"})
            continue
        data.truncated += int(enc["truncated"])
        data.rows.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                          "labels": enc["labels"], "length": len(enc["input_ids"])})
    if no_assistant == data.total:
        raise TunelensError(f"the dataset has no assistant turns ({data.total} records): nothing to train on")
    if not data.rows:
        if min_prompt is not None and min_prompt >= max_length:
            raise TunelensError(
                f"max_length {max_length} is smaller than every prompt (the shortest prompt is {min_prompt} tokens); "
                "raise max_length"
            )
        raise TunelensError(f"every example was dropped by the length policy (max_length {max_length}, {policy})")
    return data


def prepare_dpo(tokenizer: Any, paths: list[str], max_length: int, policy: str) -> PreparedData:
    """Preference pairs in TRL's conversational format; the length policy is applied here, not by TRL."""
    records = read_training_records(paths, "preference")
    data = PreparedData(rows=[], total=len(records))
    min_prompt = None
    checked: set[tuple[str, ...]] = set()
    for source, rec in records:
        prompt = rec["prompt"]
        if not prompt or prompt[-1]["role"] == "assistant":
            data.dropped.append({"id": rec["id"], "source_file": source,
                                 "reason": "prompt is empty or ends with an assistant turn"})
            continue
        lengths = []
        prompt_len = None
        for reply in (rec["chosen"], rec["rejected"]):
            messages = prompt + [{"role": "assistant", "content": reply}]
            roles = tuple(m["role"] for m in messages)
            if roles not in checked:
                check_prompt_rendering(tokenizer, messages)
                checked.add(roles)
            enc = encode_for_sft(tokenizer, messages)
            lengths.append(enc["length"])
            prompt_len = enc["prompt_length"]
        min_prompt = prompt_len if min_prompt is None else min(min_prompt, prompt_len)
        longest = max(lengths)
        if prompt_len >= max_length:
            data.dropped.append({"id": rec["id"], "source_file": source,
                                 "reason": f"prompt of {prompt_len} tokens fills max_length {max_length}"})
            continue
        if longest > max_length:
            if policy == "drop":
                data.dropped.append({"id": rec["id"], "source_file": source,
                                     "reason": f"length {longest} > max_length {max_length} (length_policy=drop)"})
                continue
            data.truncated += 1
        data.rows.append({
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": rec["chosen"]}],
            "rejected": [{"role": "assistant", "content": rec["rejected"]}],
        })
    if not data.rows:
        if min_prompt is not None and min_prompt >= max_length:
            raise TunelensError(
                f"max_length {max_length} is smaller than every prompt (the shortest prompt is {min_prompt} tokens); "
                "raise max_length"
            )
        raise TunelensError(f"every preference pair was dropped (max_length {max_length}, {policy}); see the reasons")
    return data
