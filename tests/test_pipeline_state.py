"""Stage markers, input hashing and the closing summary's readings."""

from __future__ import annotations

import json

from tunelens.pipeline.state import RunState, path_digest, stage_hash
from tunelens.pipeline.summary import _verdict, build_summary


def test_path_digest_tracks_content(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text("1\n")
    d1 = path_digest(f)
    f.write_text("2\n")
    assert path_digest(f) != d1
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "x").write_text("x")
    d2 = path_digest(tmp_path / "dir")
    (tmp_path / "dir" / "y").write_text("y")
    assert path_digest(tmp_path / "dir") != d2
    assert path_digest("hf:org/name").startswith("spec:")


def test_stage_hash_is_order_independent_and_sensitive():
    assert stage_hash({"a": 1, "b": [1, 2]}) == stage_hash({"b": [1, 2], "a": 1})
    assert stage_hash({"a": 1}) != stage_hash({"a": 2})


def test_markers_complete_skip_invalidate(tmp_path):
    state = RunState(tmp_path)
    assert not state.is_complete("train", "h1")
    state.start("train", "h1")
    assert state.in_progress_hash("train") == "h1"
    state.interrupted("train")
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "interrupted during train"
    assert RunState(tmp_path).in_progress_hash("train") == "h1"  # survives a restart
    state.complete("train", "h1", 1.5, {"steps": 3})
    assert state.is_complete("train", "h1") and not state.is_complete("train", "h2")
    assert state.in_progress_hash("train") is None
    state.invalidate("train")
    assert not state.is_complete("train", "h1")


def test_truncated_run_json_does_not_break_resume(tmp_path):
    RunState(tmp_path).complete("curate", "h", 1.0, {})
    (tmp_path / "run.json").write_text('{"status": "runn')
    assert RunState(tmp_path).is_complete("curate", "h")  # the marker still counts


def test_verdicts_respect_direction():
    assert _verdict(None) == "not compared"
    assert _verdict({"significant": False, "delta": 0.3}) == "no significant change"
    assert _verdict({"significant": True, "delta": 0.3, "higher_is_better": True}) == "better (significant)"
    assert _verdict({"significant": True, "delta": 0.3, "higher_is_better": False}) == "worse (significant)"
    assert _verdict({"significant": True, "delta": -0.2, "higher_is_better": False}) == "better (significant)"


def test_verdicts_flag_too_few_items():
    # n=2, both refused: the bootstrap CI is [1, 1] and "significant", which alone would overstate it
    assert _verdict({"significant": True, "delta": 1.0, "higher_is_better": False, "n": 2}) == \
        "worse (significant; only 2 items, too few to conclude)"
    assert _verdict({"significant": False, "delta": 0.0, "n": 5}) == \
        "no significant change (only 5 items, too few to conclude)"
    assert _verdict({"significant": True, "delta": 0.3, "higher_is_better": True, "n": 45}) == "better (significant)"


def test_summary_reads_the_artifacts(tmp_path):
    (tmp_path / "eval").mkdir()
    results = {
        "results": {"base": {"builtin": {"pass_rate/test": {"value": 0.2, "ci": [0.1, 0.3], "n": 90}}},
                    "tuned": {"builtin": {"pass_rate/test": {"value": 0.7, "ci": [0.6, 0.8], "n": 90}}}},
        "comparisons": [{"suite": "builtin", "metric": "pass_rate/test", "a": "base", "b": "tuned", "delta": 0.5,
                         "ci": [0.4, 0.6], "significant": True, "higher_is_better": True}],
        "cost": {"base": {"tokens_per_s": 50.0}, "tuned": {"tokens_per_s": 45.0}},
    }
    (tmp_path / "eval" / "results.json").write_text(json.dumps(results))
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "metrics.jsonl").write_text("".join(json.dumps({"step": i, "loss": 2.0 - i / 10}) + "\n"
                                                              for i in range(8)))
    rows = {r["what"]: r for r in build_summary(tmp_path)["rows"]}
    seen = rows["Instruction following, seen families (test split)"]
    assert seen["tuned"]["value"] == 0.7 and seen["delta"]["ci"] == [0.4, 0.6] and seen["verdict"] == "better (significant)"
    loss = next(r for w, r in rows.items() if w.startswith("Training loss"))
    assert loss["verdict"].startswith("trajectory only") and loss["tuned"]["value"] < loss["base"]["value"]
    assert rows["Generation speed (tokens/s, eval)"]["delta"]["value"] == -5.0
