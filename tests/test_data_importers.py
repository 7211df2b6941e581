"""Importers: every format, detection and override, column maps, bad rows and bad files."""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys

import pytest

from tunelens.data.importers import detect_format, load_records, parse_column_map, parse_hh_transcript
from tunelens.errors import ConfigError, TunelensError
from tunelens.records import parse_record


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_alpaca_json_array_with_and_without_input(tmp_path):
    path = tmp_path / "alp.json"
    path.write_text(json.dumps([
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
        {"instruction": "Say hi.", "input": "", "output": "Hi!"},
    ]))
    res = load_records(path, license="CC-BY-NC-4.0")
    assert res.fmt == "alpaca" and len(res.records) == 2 and not res.malformed
    first, second = res.records
    assert first["messages"] == [{"role": "user", "content": "Add the numbers.\n\n2 and 3"}, {"role": "assistant", "content": "5"}]
    assert first["meta"]["spans"] == {"instruction": [0, 16], "input": [18, 25]}
    assert second["messages"][0]["content"] == "Say hi."
    prov = first["provenance"]
    assert prov["license"] == "CC-BY-NC-4.0" and prov["row"] == 0 and prov["source"] == "alp" and len(prov["sha256"]) == 64
    assert res.locations == [f"{path}:item 0", f"{path}:item 1"]
    parse_record(first)


def test_licence_is_unknown_unless_given(tmp_path):
    path = _jsonl(tmp_path / "a.jsonl", [{"instruction": "x", "output": "y"}])
    assert load_records(path).records[0]["provenance"]["license"] == "unknown"


def test_sharegpt_and_openai(tmp_path):
    sg = _jsonl(tmp_path / "sg.jsonl", [{"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
                                         {"conversations": [{"from": "narrator", "value": "?"}]}])
    res = load_records(sg)
    assert res.fmt == "sharegpt"
    assert [m["role"] for m in res.records[0]["messages"]] == ["system", "user", "assistant"]
    assert res.records[1]["messages"][0]["role"] == "narrator"  # left for validation to reject, with a reason
    oa = _jsonl(tmp_path / "oa.jsonl", [{"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                                                      {"role": "assistant", "content": "c"}]}])
    res = load_records(oa)
    assert res.fmt == "openai" and res.records[0]["messages"][0]["content"] == "ab"


def test_gsm8k_real_file(shared_data):
    res = load_records(shared_data / "gsm8k_test.jsonl", license="MIT")
    assert res.fmt == "gsm8k" and len(res.records) == 1319 and not res.malformed
    rec = res.records[0]
    assert rec["meta"]["final_answer"] == "18"
    assert rec["messages"][1]["content"].endswith("#### 18")


def test_hh_rlhf_real_gzip_file(shared_data):
    res = load_records(shared_data / "hh_rlhf_helpful_base_test.jsonl.gz", license="MIT")
    assert res.fmt == "hh-rlhf"
    assert res.total == 2354
    rec = res.records[0]
    assert rec["kind"] == "preference" and rec["prompt"][-1]["role"] == "user"
    assert rec["chosen"] and rec["rejected"] and rec["chosen"] != rec["rejected"]
    # Pairs whose transcripts diverge before the last reply cannot be one preference pair: reported, not dropped.
    assert all("differ before the final" in m.reason for m in res.malformed)
    assert all(m.location.split(":")[-1].isdigit() for m in res.malformed)


def test_hh_transcript_parser():
    msgs = parse_hh_transcript("\n\nHuman: hi\n\nAssistant: hello\n\nHuman: bye\n\nAssistant: ciao")
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"] and msgs[-1]["content"] == "ciao"


def test_preference_with_message_lists(tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", [{"prompt": "Q?", "chosen": [{"role": "assistant", "content": "good"}], "rejected": "bad"}])
    rec = load_records(path).records[0]
    assert rec["kind"] == "preference" and rec["chosen"] == "good" and rec["prompt"] == [{"role": "user", "content": "Q?"}]


def test_generic_csv_with_column_map(tmp_path):
    path = tmp_path / "qa.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["q", "a", "extra"])
        w.writerow(["What is 2+2?", "4", "x"])
        w.writerow(["too", "many", "fields", "here"])
    res = load_records(path, fmt="generic", column_map=parse_column_map("prompt=q,response=a"))
    assert res.records[0]["messages"] == [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]
    assert len(res.malformed) == 1 and res.malformed[0].location == f"{path}:3" and "more field" in res.malformed[0].reason


def test_parquet_and_column_map_on_a_named_format(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"task": ["Name a colour."], "answer": ["Blue."]}), path)
    res = load_records(path, column_map={"instruction": "task", "output": "answer"})
    assert res.fmt == "alpaca" and res.records[0]["messages"][1]["content"] == "Blue."


def test_records_file_keeps_its_licence_and_fills_unknown(tmp_path):
    from tunelens.records import make_conversation

    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    known = make_conversation(msgs, source="s", source_file=None, row=0, license="MIT")
    unknown = make_conversation(msgs, source="s", source_file=None, row=1, license=None)
    res = load_records(_jsonl(tmp_path / "r.jsonl", [known, unknown]), license="Apache-2.0")
    assert res.fmt == "records"
    assert [r["provenance"]["license"] for r in res.records] == ["MIT", "Apache-2.0"]


def test_malformed_lines_are_reported_with_file_and_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"instruction": "a", "output": "b"}\nnot json\n\n[1, 2]\n{"instruction": "\xff", "output": "x"}\n{"output": "no instruction"}\n')
    res = load_records(path)
    assert len(res.records) == 1
    reasons = {m.location: m.reason for m in res.malformed}
    assert reasons[f"{path}:2"].startswith("invalid JSON")
    assert reasons[f"{path}:4"] == "expected an object, got list"
    assert reasons[f"{path}:5"].startswith("invalid UTF-8")
    assert "missing field" in reasons[f"{path}:6"]
    assert res.malformed[0].raw == "not json"
    with pytest.raises(TunelensError, match=rf"{path}:2: invalid JSON"):
        load_records(path, on_error="fail")


def test_invalid_utf8_inside_csv_and_json_rejects_only_that_row(tmp_path):
    from tunelens.data.curate import curate

    csv_path = tmp_path / "b.csv"
    csv_path.write_bytes(b"prompt,response\nfine,ok\nbad \xff byte,ok\n")
    json_path = tmp_path / "b.json"
    json_path.write_bytes(b'[{"instruction": "also fine", "output": "ok"}, {"instruction": "bad \xfe", "output": "ok"}]')
    res = load_records(csv_path, fmt="generic")
    assert len(res.records) == 2  # the bad byte travels as a lone surrogate to validation
    report = curate([csv_path, json_path], tmp_path / "o")
    assert report.kept == 2 and report.step("validate").rejected == 2
    rejects = [json.loads(line) for line in (tmp_path / "o" / "rejects.jsonl").open(encoding="utf-8")]
    assert [r["location"] for r in rejects] == [f"{csv_path}:3", f"{json_path}:item 1"]
    assert all(r["reason"].startswith("invalid UTF-8") for r in rejects)


def test_an_odd_first_row_does_not_decide_the_format(tmp_path):
    path = _jsonl(tmp_path / "odd.jsonl", [{"instruction": "no output here"}, {"note": "x"},
                                            {"instruction": "a", "output": "b"}, {"instruction": "c", "output": "d"}])
    res = load_records(path)
    assert res.fmt == "alpaca" and len(res.records) == 2
    assert [m.location for m in res.malformed] == [f"{path}:1", f"{path}:2"]
    assert res.records[0]["provenance"]["row"] == 2


def test_detection_and_overrides():
    assert detect_format({"instruction", "input", "output"}) == "alpaca"
    assert detect_format({"question", "answer"}) == "gsm8k"
    assert detect_format({"chosen", "rejected"}) == "hh-rlhf"
    assert detect_format({"prompt", "chosen", "rejected"}) == "preference"
    assert detect_format({"kind", "id", "messages", "provenance"}) == "records"
    assert detect_format({"prompt", "response", "id"}) == "generic"
    assert detect_format({"text", "label"}) is None


def test_bad_files_and_options_are_named(tmp_path, shared_data):
    with pytest.raises(TunelensError, match="no such file"):
        load_records(tmp_path / "missing.jsonl")
    with pytest.raises(TunelensError, match="is a directory"):
        load_records(tmp_path)
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(TunelensError, match="unknown file type '.xml'"):
        load_records(tmp_path / "x.xml")
    with pytest.raises(TunelensError, match=r"cannot detect the format from the columns \['instruction_id_list', 'key', 'kwargs', 'prompt'\]"):
        load_records(shared_data / "ifeval_input_data.jsonl")
    with pytest.raises(TunelensError, match=r"column map prompt='q': no such column; the columns are \['answer', 'question'\]"):
        load_records(shared_data / "gsm8k_test.jsonl", fmt="generic", column_map={"prompt": "q", "response": "answer"})
    with pytest.raises(ConfigError, match="unknown format 'yaml'"):
        load_records(shared_data / "gsm8k_test.jsonl", fmt="yaml")
    with pytest.raises(ConfigError, match="did you mean 'CC-BY-NC-4.0'"):
        load_records(shared_data / "gsm8k_test.jsonl", license="CC BY-NC 4.0")
    with pytest.raises(ConfigError, match="FIELD=COLUMN"):
        parse_column_map("prompt")
    broken = tmp_path / "broken.json"
    broken.write_text('[{"instruction": "a", "output": "b"},')
    with pytest.raises(TunelensError, match=r"broken.json: invalid JSON at line 1"):
        load_records(broken)
    bad_gz = tmp_path / "t.jsonl.gz"
    bad_gz.write_bytes(gzip.compress(b'{"instruction": "a", "output": "b"}\n' * 50)[:40])
    with pytest.raises(TunelensError, match="read error"):
        load_records(bad_gz)


def test_hub_dataset_offline_fails_with_a_clear_message(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    proc = subprocess.run(
        [sys.executable, "-c", "from tunelens.cli import main; main()", "data", "import", "hf:tatsu-lab/alpaca", "-o", str(tmp_path / "o.jsonl")],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "cannot load hub dataset 'tatsu-lab/alpaca' split 'train'" in proc.stderr
    assert "offline" in proc.stderr and "Traceback" not in proc.stderr
