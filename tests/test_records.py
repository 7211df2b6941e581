import json

import pytest

from tunelens.records import (
    content_hash,
    load_dataset,
    make_conversation,
    make_preference,
    parse_record,
    read_records,
    write_jsonl,
)


def test_conversation_roundtrip_and_hash(tmp_path):
    rec = make_conversation(
        [{"role": "user", "content": "Hi  "}, {"role": "assistant", "content": "Hello"}],
        source="unit", source_file="x.json", row=3, license="MIT", tags=["a"], meta={"k": 1},
    )
    assert rec["id"] == "unit:3"
    assert rec["provenance"]["sha256"] == content_hash(rec)
    # normalised content: trailing whitespace does not change the hash
    rec2 = make_conversation(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
        source="other", source_file=None, row=None, license=None,
    )
    assert rec2["provenance"]["sha256"] == rec["provenance"]["sha256"]
    assert rec2["provenance"]["license"] == "unknown"
    path = tmp_path / "r.jsonl"
    write_jsonl(path, [rec, rec2])
    loaded = read_records(path)
    assert loaded[0].meta == {"k": 1} and loaded[1].provenance.license == "unknown"
    ds = load_dataset(path)
    assert len(ds) == 2 and ds[0]["messages"][1]["content"] == "Hello"


def test_preference_record_validates():
    rec = make_preference([{"role": "user", "content": "Q"}], "good", "bad", source="hh", source_file="f", row=0, license="MIT")
    parsed = parse_record(rec)
    assert parsed.kind == "preference" and parsed.chosen == "good"
    assert rec["provenance"]["sha256"] != make_preference(
        [{"role": "user", "content": "Q"}], "bad", "good", source="hh", source_file="f", row=0, license="MIT"
    )["provenance"]["sha256"]


def test_bad_record_names_field():
    with pytest.raises(Exception, match="role"):
        parse_record({"kind": "conversation", "id": "x", "messages": [{"role": "robot", "content": "x"}],
                      "provenance": {"source": "s"}})


def test_bad_jsonl_line_named(tmp_path):
    p = tmp_path / "bad.jsonl"
    good = make_conversation([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                             source="s", source_file=None, row=0, license="MIT")
    p.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: invalid JSON"):
        read_records(p)
    p.write_text(json.dumps({"a": 1}) + "\n")
    with pytest.raises(ValueError, match=r"record 1"):
        read_records(p)


def test_lone_surrogate_does_not_crash_builder():
    rec = make_conversation([{"role": "user", "content": "bad \ud800"}, {"role": "assistant", "content": "x"}],
                            source="s", source_file=None, row=1, license=None)
    assert rec["provenance"]["sha256"] == ""  # left for validation to reject as invalid UTF-8


def test_numbered_jsonl_counts_blank_lines(tmp_path):
    from tunelens.records import iter_jsonl_numbered

    path = tmp_path / "gaps.jsonl"
    path.write_text('{"a": 1}\n\n   \n{"a": 2}\n[3]\n', encoding="utf-8")
    rows = []
    with pytest.raises(ValueError, match=r"gaps.jsonl:5: expected a JSON object"):
        for lineno, obj in iter_jsonl_numbered(path):
            rows.append((lineno, obj["a"]))
    assert rows == [(1, 1), (4, 2)]


def test_explain_prompts_error_names_the_real_line(tmp_path):
    from tunelens.errors import TunelensError
    from tunelens.explain.runs import read_prompts

    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "hi"}\n\n{"nothing": 1}\n', encoding="utf-8")
    with pytest.raises(TunelensError, match=r"p.jsonl:3: expected 'messages'"):
        read_prompts(path)
