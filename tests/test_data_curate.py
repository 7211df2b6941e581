"""curate() end to end: outputs, invariant, datasheet, config, CLI, property test, real Alpaca slice."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from huggingface_hub import DatasetCard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tunelens.cli import app
from tunelens.data.config import CurateConfig
from tunelens.data.curate import curate
from tunelens.errors import ConfigError, TunelensError
from tunelens.records import make_conversation, parse_record


def _lines(path: Path) -> list[dict]:
    # split on "\n" only: JSON keeps U+0085 / U+2028 unescaped, and str.splitlines() would cut there
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def _write_rows(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _check_invariant(outdir: Path, n_input: int) -> tuple[list[dict], list[dict]]:
    kept, rejects = _lines(outdir / "curated.jsonl"), _lines(outdir / "rejects.jsonl")
    assert len(kept) + len(rejects) == n_input
    assert all(r["step"] and r["reason"] for r in rejects)
    return kept, rejects


ROWS = [
    {"instruction": "Give me the support address.", "input": "", "output": "Write to help@example.com or call (555) 123-4567."},
    {"instruction": "Name a planet.", "input": "", "output": "Mars."},
    {"instruction": "Name a planet.", "input": "", "output": "Mars."},          # exact duplicate
    {"instruction": "Explain  gravity.  ", "input": "", "output": "Mass attracts mass.  \n\n\n\nThe end."},  # normalised
    {"instruction": "Your view?", "input": "", "output": "As an AI language model, I have no views."},  # boilerplate
    {"instruction": "Empty reply", "input": "", "output": "   "},                 # validation
    "{broken json",                                                               # import
]


def test_curate_writes_four_files_and_keeps_the_invariant(tmp_path, shared_data):
    src = _write_rows(tmp_path / "mini.jsonl", ROWS)
    gsm_q = json.loads((shared_data / "gsm8k_test.jsonl").open().readline())["question"]
    extra = _write_rows(tmp_path / "extra.jsonl", [{"question": gsm_q, "answer": "18"}])
    cfg = CurateConfig.from_dict({"license": "CC-BY-4.0", "decontaminate": {"files": [str(shared_data / "gsm8k_test.jsonl")]}})
    report = curate([src, extra], tmp_path / "out", cfg)
    out = tmp_path / "out"
    for name in ("curated.jsonl", "rejects.jsonl", "changes.jsonl", "datasheet.md"):
        assert (out / name).is_file()
    kept, rejects = _check_invariant(out, len(ROWS) + 1)
    assert report.records_in == 8 and report.kept == len(kept) == 3
    by_step = {r["step"]: r for r in rejects}
    assert set(by_step) == {"import", "validate", "dedup_exact", "quality", "decontaminate"}
    assert by_step["import"]["location"] == f"{src}:7"
    assert by_step["validate"]["location"] == f"{src}:6" and by_step["validate"]["record"]["id"] == "mini:5"
    assert by_step["dedup_exact"]["detail"]["duplicate_of"] == "mini:1"
    assert by_step["decontaminate"]["detail"]["eval_file"].endswith("gsm8k_test.jsonl")
    from tunelens.records import load_dataset
    assert load_dataset(out / "curated.jsonl").num_rows == 3  # curated output loads as a datasets.Dataset
    for rec in kept:
        parse_record(rec)
        assert rec["provenance"]["license"] == "CC-BY-4.0"
    assert "[EMAIL]" in kept[0]["messages"][1]["content"] and "[PHONE]" in kept[0]["messages"][1]["content"]
    changes = _lines(out / "changes.jsonl")
    assert {c["step"] for c in changes} == {"normalise", "pii"}
    pii_change = next(c for c in changes if c["step"] == "pii")
    assert "help@example.com" in pii_change["fields"][0]["before"] and pii_change["pii"] == {"EMAIL": 1, "PHONE": 1}
    # The kept record's hash is the hash of its final (redacted) content.
    from tunelens.records import content_hash
    assert all(r["provenance"]["sha256"] == content_hash(r) for r in kept)

    card = DatasetCard.load(out / "datasheet.md")
    meta = card.data.to_dict()
    assert meta["license"] == ["cc-by-4.0"] and meta["size_categories"] == ["n<1K"]
    # local files have no Hub dataset id, and the Hub rejects file stems: no source_datasets
    assert "source_datasets" not in meta and meta["tunelens"]["records_in"] == 8
    for section in ("## Sources", "## Licences", "## Curation steps", "## Length statistics", "## PII redaction",
                    "## Duplicates", "## Contamination"):
        assert section in card.text
    assert "`[EMAIL]` | 1" in card.text and "1 records removed" in card.text


def test_in_memory_records_and_paths_mix(tmp_path):
    msgs = [{"role": "user", "content": "Suite prompt?"}, {"role": "assistant", "content": "Suite answer."}]
    memory = [make_conversation(msgs, source="suite", source_file=None, row=i, license="Apache-2.0") for i in range(2)]
    memory.append({"kind": "conversation", "id": "bad", "messages": "not a list", "provenance": {"source": "suite"}})
    src = _write_rows(tmp_path / "a.jsonl", ROWS[:2])
    report = curate([src, *memory], tmp_path / "o", CurateConfig(license="MIT"))
    kept, rejects = _check_invariant(tmp_path / "o", 5)
    assert report.inputs[-1].source == "<memory>" and report.inputs[-1].records == 3
    assert sorted(r["provenance"]["source"] for r in kept) == ["a", "a", "suite"]
    assert {r["step"] for r in rejects} == {"validate", "dedup_exact"}
    with pytest.raises(TunelensError, match="expected a file path"):
        curate([42], tmp_path / "o2")


def test_on_error_fail_stops_with_the_location(tmp_path):
    src = _write_rows(tmp_path / "m.jsonl", ROWS[:6])
    with pytest.raises(TunelensError, match=rf"{src}:6: empty turn"):
        curate([src], tmp_path / "o", CurateConfig(on_error="fail"))


def test_scorer_enables_toxicity_and_commercial_preset(tmp_path):
    rows = [{"instruction": "Insult me.", "input": "", "output": "You idiot."}, {"instruction": "Greet me.", "input": "", "output": "Hello there!"}]
    src = _write_rows(tmp_path / "t.jsonl", rows)
    report = curate([src], tmp_path / "o", CurateConfig(license="MIT"), scorer=lambda ts: [float("idiot" in t) for t in ts])
    assert report.step("toxicity").rejected == 1 and report.kept == 1
    assert "## Toxicity" in (tmp_path / "o" / "datasheet.md").read_text()
    nc = curate([src], tmp_path / "nc", CurateConfig.from_dict({"license": "CC-BY-NC-4.0", "license_policy": {"preset": "commercial"}}))
    assert nc.kept == 0 and nc.step("license").rejected == 2
    unknown = curate([src], tmp_path / "unk", CurateConfig.from_dict({"license_policy": {"preset": "commercial"}}))
    reasons = {r["reason"] for r in _lines(tmp_path / "unk" / "rejects.jsonl")}
    assert reasons == {"licence unknown: the policy (commercial preset) needs a known licence; pass --license if you know it"}
    assert unknown.kept == 0


def test_builtin_toxicity_scorer_from_the_config(tmp_path):
    rows = [{"instruction": "Reply to the tweet.", "input": "", "output": "Shut up you stupid idiot, I hate you"},
            {"instruction": "Greet me.", "input": "", "output": "Good morning, I hope you have a lovely day."}]
    src = _write_rows(tmp_path / "t.jsonl", rows)
    report = curate([src], tmp_path / "o", CurateConfig.from_dict({"license": "MIT", "toxicity": {"enabled": True, "scorer": "builtin"}}))
    (reject,) = _lines(tmp_path / "o" / "rejects.jsonl")
    assert reject["step"] == "toxicity" and reject["detail"]["score"] >= 0.5 and "idiot" in reject["record"]["messages"][1]["content"]
    assert report.kept == 1


def test_config_yaml_errors_name_the_field(tmp_path):
    good = tmp_path / "c.yaml"
    good.write_text("license: MIT\ndedup:\n  threshold: 0.9\n  near: false\ndecontaminate:\n  files: ['x.jsonl::prompt']\n")
    cfg = CurateConfig.from_yaml(good)
    assert cfg.dedup.threshold == 0.9 and not cfg.dedup.near and cfg.decontaminate.files[0].fields == ["prompt"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("dedup:\n  treshold: 0.9\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: dedup.treshold: Extra inputs are not permitted"):
        CurateConfig.from_yaml(bad)
    bad.write_text("quality:\n  max_repetition: 2\n")
    with pytest.raises(ConfigError, match="quality.max_repetition"):
        CurateConfig.from_yaml(bad)
    with pytest.raises(ConfigError, match="curate config not found: .*none.yaml"):
        CurateConfig.from_yaml(tmp_path / "none.yaml")


def test_example_config_loads_and_runs_from_the_cli(tmp_path, shared_data):
    example = Path(__file__).resolve().parents[1] / "configs" / "data" / "curate-alpaca.yaml"
    cfg = CurateConfig.from_yaml(example)
    assert cfg.license == "CC-BY-NC-4.0" and cfg.decontaminate.files[1].fields == ["question", "answer"]
    assert cfg.model_dump(exclude={"license", "source", "decontaminate"}) == CurateConfig().model_dump(exclude={"license", "source", "decontaminate"})
    text = example.read_text().replace("../shared/data/", f"{shared_data}/")
    (tmp_path / "c.yaml").write_text(text)
    src = _write_rows(tmp_path / "mini.jsonl", ROWS)
    res = CliRunner().invoke(app, ["data", "curate", str(src), "-o", str(tmp_path / "out"), "--config", str(tmp_path / "c.yaml"), "-q",
                                   "--license", "MIT"])
    assert res.exit_code == 0, res.output
    kept = _lines(tmp_path / "out" / "curated.jsonl")
    assert {r["provenance"]["license"] for r in kept} == {"MIT"} and {r["provenance"]["source"] for r in kept} == {"alpaca"}


def test_cli_curate_and_import(tmp_path, shared_data):
    src = _write_rows(tmp_path / "mini.jsonl", ROWS)
    runner = CliRunner()
    res = runner.invoke(app, ["data", "curate", str(src), "-o", str(tmp_path / "out"), "--license", "MIT", "--quiet",
                              "--near-dup-threshold", "0.9", "--decontaminate", f"{shared_data / 'ifeval_input_data.jsonl'}::prompt"])
    assert res.exit_code == 0, res.output
    assert "7 in -> 3 kept, 4 rejected" in res.output and "decontaminate" in res.output
    _check_invariant(tmp_path / "out", 7)
    res = runner.invoke(app, ["data", "import", str(src), "-o", str(tmp_path / "r.jsonl"), "--license", "MIT"])
    assert res.exit_code == 0, res.output
    assert len(_lines(tmp_path / "r.jsonl")) == 6 and len(_lines(tmp_path / "r.rejects.jsonl")) == 1
    res = runner.invoke(app, ["data", "curate", str(src), "-o", str(tmp_path / "o2"), "--near-dup-threshold", "1.5"])
    assert isinstance(res.exception, ConfigError) and "dedup.threshold" in str(res.exception)


def test_one_bad_line_in_a_50000_line_file_is_rejected_not_fatal(tmp_path):
    lines = [json.dumps({"instruction": f"Question number {i}?", "output": f"Answer {i}."}) for i in range(50_000)]
    lines[24_999] = '{"instruction": "cut off'
    src = tmp_path / "big.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["data", "curate", str(src), "-o", str(tmp_path / "out"), "-q", "--no-pii",
                                   "--no-near-dup", "--no-exact-dup", "--no-quality", "--no-normalise"])
    assert res.exit_code == 0, res.output
    (reject,) = _lines(tmp_path / "out" / "rejects.jsonl")
    assert reject["location"] == f"{src}:25000" and reject["reason"].startswith("invalid JSON")
    assert reject["raw"] == '{"instruction": "cut off'
    report = json.loads((tmp_path / "out" / "curate_report.json").read_text())
    assert report["kept"] == 49_999 and [s["name"] for s in report["steps"]] == ["validate"]
    res = CliRunner().invoke(app, ["data", "curate", str(src), "-o", str(tmp_path / "out2"), "-q", "--on-error", "fail"])
    assert isinstance(res.exception, TunelensError) and f"{src}:25000: invalid JSON" in str(res.exception)


# ---------------------------------------------------------------- property: kept + rejected = input

_text = st.one_of(st.text(max_size=40), st.just(""), st.just("   "), st.integers(), st.none(), st.just("dup text here"))
_row = st.one_of(
    st.fixed_dictionaries({"instruction": _text, "input": _text, "output": _text}),
    st.fixed_dictionaries({"instruction": _text}),
    st.lists(st.integers(), max_size=2),
    st.text(max_size=20).map(lambda s: "{" + s),  # broken JSON line
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(_row, min_size=1, max_size=25))
def test_kept_plus_rejected_equals_input_on_random_malformed_input(rows):
    lines = [r if isinstance(r, str) and r.startswith("{") else json.dumps(r) for r in rows]
    lines = [line.replace("\n", " ") for line in lines]
    n_input = sum(1 for line in lines if line.strip())
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.jsonl"
        src.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            report = curate([src], Path(tmp) / "out", CurateConfig(format="alpaca"))
        except TunelensError as exc:  # only a whole-file problem may stop a run
            pytest.fail(f"run stopped: {exc}")
        assert report.records_in == n_input == report.kept + report.rejected
        _check_invariant(Path(tmp) / "out", n_input)


# ---------------------------------------------------------------- integration: 2,000 real Alpaca records


def test_curate_real_alpaca_slice(tmp_path, shared_data):
    rows = json.loads((shared_data / "alpaca_data.json").read_text(encoding="utf-8"))[:2000]
    src = tmp_path / "alpaca_2k.json"
    src.write_text(json.dumps(rows), encoding="utf-8")
    cfg = CurateConfig.from_dict({
        "license": "CC-BY-NC-4.0", "source": "alpaca",
        "decontaminate": {"files": [str(shared_data / "ifeval_input_data.jsonl"), str(shared_data / "gsm8k_test.jsonl")]},
    })
    report = curate([src], tmp_path / "out", cfg)
    kept, rejects = _check_invariant(tmp_path / "out", 2000)
    assert report.inputs[0].format == "alpaca" and report.records_in == 2000
    assert 1900 < report.kept < 2000  # Alpaca is mostly clean; a few empty / boilerplate rows go
    names = [s.name for s in report.steps]
    assert names == ["validate", "normalise", "pii", "dedup_exact", "dedup_near", "quality", "decontaminate"]
    assert all(s.records_in == s.kept + s.rejected for s in report.steps)
    assert {r["step"] for r in rejects} <= {"validate", "quality", "dedup_exact", "dedup_near", "decontaminate"}
    assert all(r["provenance"]["source"] == "alpaca" and r["provenance"]["license"] == "CC-BY-NC-4.0" for r in kept)
    card = DatasetCard.load(tmp_path / "out" / "datasheet.md")
    assert card.data.license == ["cc-by-nc-4.0"] and card.data.size_categories == ["1K<n<10K"]
    assert f"**2,000 records in, {report.kept:,} kept" in card.text
