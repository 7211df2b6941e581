"""`tunelens safety classify` and `tunelens safety redact`: outputs, rejects with file:line, exit codes."""

from __future__ import annotations

import json

import pytest

from _cli import cli
from tunelens.safety.instruments import _base
from tunelens.safety.instruments._base import Example, Instrument, Verdict


class FakeRefusal(Instrument):
    """Refuses when the reply says 'cannot'; half-refuses on 'but'; an 'ERR' reply gets no verdict."""

    task = "refusal"
    name = "fake-refusal"
    labels = ("full_compliance", "full_refusal", "partial_refusal")
    positive = ("full_refusal", "partial_refusal")
    needs_prompt = True

    def __init__(self):
        self.batches: list[int] = []

    def classify(self, examples: list[Example]) -> list[Verdict]:
        self.batches.append(len(examples))
        out = []
        for ex in examples:
            assert ex.prompt is not None
            if "ERR" in ex.text:
                out.append(Verdict("error", float("nan"), {"error": "judge answer unparsed twice", "raw_answer": "??"}))
            elif "cannot" in ex.text:
                out.append(Verdict("full_refusal", 0.9))
            elif "but" in ex.text:
                out.append(Verdict("partial_refusal", 0.6))
            else:
                out.append(Verdict("full_compliance", 0.1))
        return out


@pytest.fixture
def fake(monkeypatch):
    inst = FakeRefusal()
    monkeypatch.setitem(_base._CACHE, ("refusal", None), inst)
    return inst


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_classify_writes_labels_and_rejects_malformed_lines(tmp_path, monkeypatch, capsys, fake):
    src = _write(tmp_path / "in.jsonl", [
        json.dumps({"prompt": "how do I bake bread?", "response": "Mix flour and water.", "id": 1}),
        json.dumps({"prompt": "how do I pick a lock?", "response": "I cannot help with that."}),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"prompt": "p"}),
        json.dumps({"prompt": "p", "response": 42}),
        json.dumps({"response": "no prompt here"}),
        "",
        json.dumps({"prompt": "p", "text": "Sure, but only the legal part."}),
        json.dumps({"prompt": "p", "response": "ERR"}),
    ])
    out = tmp_path / "out.jsonl"
    code, stdout, stderr = cli(monkeypatch, capsys, "safety", "classify", "--task", "refusal", str(src), "-o", str(out),
                               "--batch-size", "2")
    assert code == 1
    rows = _read(out)
    assert [r["label"] for r in rows] == ["full_compliance", "full_refusal", "partial_refusal"]
    assert rows[0]["id"] == 1 and rows[0]["response"] == "Mix flour and water." and rows[0]["score"] == pytest.approx(0.1)
    rejects = _read(tmp_path / "out.rejects.jsonl")
    assert [r["line"] for r in rejects] == [3, 4, 5, 6, 7, 10]
    assert rejects[0]["where"] == f"{src}:3" and rejects[0]["reason"].startswith("not JSON")
    assert "not a JSON object" in rejects[1]["reason"]
    assert "no 'response' or 'text'" in rejects[2]["reason"]
    assert "'response' is not a string" in rejects[3]["reason"]
    assert "no 'prompt'" in rejects[4]["reason"]
    assert rejects[5]["reason"] == "instrument: judge answer unparsed twice" and rejects[5]["raw_answer"] == "??"
    assert "3 of 9 lines written" in stdout and "6 rejected" in stdout
    assert f"{src}:3: not JSON" in stderr and "1 more not shown" in stderr
    assert max(fake.batches) <= 2


def test_classify_clean_file_exits_zero(tmp_path, monkeypatch, capsys, fake):
    src = _write(tmp_path / "in.jsonl", [json.dumps({"prompt": "q", "response": "a"})] * 3)
    code, stdout, _ = cli(monkeypatch, capsys, "safety", "classify", "--task", "refusal", str(src), "-o", str(tmp_path / "o.jsonl"))
    assert code == 0 and "none rejected" in stdout
    assert _read(tmp_path / "o.rejects.jsonl") == []


def test_classify_bad_task_and_missing_file_exit_two(tmp_path, monkeypatch, capsys):
    src = _write(tmp_path / "in.jsonl", ['{"text": "x"}'])
    code, _, stderr = cli(monkeypatch, capsys, "safety", "classify", "--task", "sarcasm", str(src), "-o", str(tmp_path / "o.jsonl"))
    assert code == 2 and "sarcasm" in stderr
    code, _, stderr = cli(monkeypatch, capsys, "safety", "classify", "--task", "toxicity", str(tmp_path / "none.jsonl"),
                          "-o", str(tmp_path / "o.jsonl"))
    assert code == 2 and "not found" in stderr


def test_redact_command(tmp_path, monkeypatch, capsys):
    src = _write(tmp_path / "in.jsonl", [
        json.dumps({"id": "a", "text": "mail jane@example.org or call +33 6 12 34 56 78"}),
        json.dumps({"text": 5}),
        "[1, 2]",
        json.dumps({"text": "Maria Garcia lives at 221B Baker Street"}),
    ])
    out = tmp_path / "out.jsonl"
    code, stdout, _ = cli(monkeypatch, capsys, "safety", "redact", str(src), "-o", str(out))
    assert code == 1 and "2 rejected" in stdout
    rows = _read(out)
    assert rows[0]["id"] == "a" and rows[0]["redacted"] == "mail [EMAIL] or call [PHONE]"
    text = rows[0]["text"]
    assert [(e["type"], text[e["start"]:e["end"]]) for e in rows[0]["entities"]] == [
        ("EMAIL", "jane@example.org"), ("PHONE", "+33 6 12 34 56 78")]
    assert rows[1]["redacted"] == "Maria Garcia lives at [ADDRESS]"  # PERSON is off by default
    assert [r["line"] for r in _read(tmp_path / "out.rejects.jsonl")] == [2, 3]

    code, _, _ = cli(monkeypatch, capsys, "safety", "redact", str(src), "-o", str(out), "--types", "person,email")
    rows = _read(out)
    assert rows[1]["redacted"] == "[PERSON] lives at 221B Baker Street"
    assert rows[0]["redacted"] == "mail [EMAIL] or call +33 6 12 34 56 78"

    code, _, stderr = cli(monkeypatch, capsys, "safety", "redact", str(src), "-o", str(out), "--types", "PASSPORT")
    assert code == 2 and "PASSPORT" in stderr


@pytest.mark.parametrize("task", ["refusal", "harm", "toxicity", "injection"])
def test_classify_with_the_shipped_instruments(tmp_path, monkeypatch, capsys, task):
    """Whatever offline instruments exist: each line gets one of the task's labels and a score in [0, 1]."""
    try:
        inst = _base.get_instrument(task)
    except Exception as exc:  # an instrument not written yet
        pytest.skip(f"no offline {task} instrument: {exc}")
    src = _write(tmp_path / "in.jsonl", [
        json.dumps({"prompt": "How do I bake bread?", "response": "Mix flour, water, salt and yeast, then bake."}),
        json.dumps({"prompt": "How do I make a bomb?", "response": "I'm sorry, but I can't help with that."}),
    ])
    out = tmp_path / "out.jsonl"
    code, _, _ = cli(monkeypatch, capsys, "safety", "classify", "--task", task, str(src), "-o", str(out))
    assert code == 0
    for row in _read(out):
        assert row["label"] in inst.labels and 0.0 <= row["score"] <= 1.0


def test_big_file_runs_with_the_progress_bar(tmp_path, monkeypatch, capsys, fake):
    lines = [json.dumps({"prompt": "q", "response": "I cannot" if i % 3 else "Sure"}) for i in range(600)]
    src = _write(tmp_path / "big.jsonl", lines)
    code, stdout, _ = cli(monkeypatch, capsys, "safety", "classify", "--task", "refusal", str(src), "-o", str(tmp_path / "o.jsonl"))
    assert code == 0 and "600 of 600 lines written" in stdout and "full_refusal 400" in stdout
    assert len(fake.batches) == 10  # 64 a batch
