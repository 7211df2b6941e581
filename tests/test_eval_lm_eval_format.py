"""Issue 16, point 4: `tunelens eval` also writes lm-evaluation-harness's results shape, one file
per model, checked against a results file lm-eval 0.4.13 itself wrote (tests/data, see
make_lm_eval_fixture.py there) and, when lm-eval is installed, read by lm-eval's own `make_table`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tunelens.evaluate import EvalConfig, evaluate
from tunelens.evaluate.lm_eval_format import Z95, to_lm_eval

FIXTURE = json.loads((Path(__file__).parent / "data" / "lm_eval_results_0.4.13.json").read_text())

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_path, shared_data):
    out = tmp_path_factory.mktemp("lmeval")
    config = EvalConfig(models=[{"spec": str(tiny_model_path), "label": "base"},
                                {"spec": str(tiny_model_path), "label": "tuned"}],
                        suites=["gsm8k"], limit=6, few_shot={"k": 1}, output_dir=out / "run", cache_dir=out / "cache",
                        data_dir=shared_data, generation={"max_new_tokens": 4, "batch_size": 8},
                        bootstrap_resamples=100)
    return out / "run", evaluate(config, progress=False)


def _same_shape(ours, theirs, where=""):
    """Every key lm-eval wrote is in ours with the same JSON type (null allowed either way)."""
    for key, value in theirs.items():
        assert key in ours, f"{where}{key} missing"
        if value is not None and ours[key] is not None and not isinstance(value, dict):
            number = (int, float)
            same = isinstance(ours[key], number) if isinstance(value, number) else isinstance(ours[key], type(value))
            assert same, f"{where}{key}: {type(ours[key]).__name__} vs lm-eval's {type(value).__name__}"


def test_one_file_per_model_in_lm_evals_layout(run):
    out, report = run
    assert set(report["files"]["lm_eval"]) == {"base", "tuned"}
    for label, rel in report["files"]["lm_eval"].items():
        path = out / rel
        assert path.parent == out / "lm-eval" / label and path.name.startswith("results_")
        assert json.loads(path.read_text()) == json.loads(json.dumps(to_lm_eval(report)[label]))
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["files"]["lm_eval"] == report["files"]["lm_eval"]


def test_shape_matches_a_file_lm_eval_wrote(run):
    _, report = run
    ours = to_lm_eval(report)["base"]
    top = {"results", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples", "config",
           "git_hash", "date", "model_source", "model_name", "model_name_sanitized", "transformers_version",
           "total_evaluation_time_seconds"}
    _same_shape(ours, {k: FIXTURE[k] for k in top})
    _same_shape(ours["config"], FIXTURE["config"], "config.")
    (their_task,) = FIXTURE["results"].values()
    task = ours["results"]["gsm8k"]
    _same_shape(task, {k: their_task[k] for k in ("name", "alias", "sample_len")}, "results.builtin.")
    assert set(ours["n-samples"]["gsm8k"]) == set(next(iter(FIXTURE["n-samples"].values())))
    # metric keys: "metric,filter" and "metric_stderr,filter" pairs, as lm-eval writes them
    their_metrics = {k for k in their_task if "," in k}
    assert their_metrics == {"exact_match,none", "exact_match_stderr,none"}
    metrics = report["results"]["base"]["gsm8k"]
    for name, entry in metrics.items():
        assert task[f"{name},none"] == entry["value"]
        if entry["ci"]:
            lo, hi = entry["ci"]
            assert math.isclose(task[f"{name}_stderr,none"], (hi - lo) / (2 * Z95), rel_tol=1e-9)
        else:
            assert task[f"{name}_stderr,none"] == "N/A"
        assert ours["higher_is_better"]["gsm8k"][name] is True
    assert ours["config"]["batch_size"] == 8 and ours["config"]["model_args"].startswith("pretrained=")


def test_lm_evals_own_reader_reads_ours(run):
    utils = pytest.importorskip("lm_eval.utils")
    _, report = run
    # first, lm-eval's reader on lm-eval's own file (the fixture is what it expects)
    assert "exact_match" in utils.make_table(FIXTURE)
    for label, body in to_lm_eval(report).items():
        table = utils.make_table(json.loads(json.dumps(body)))
        rows = {}
        for line in table.splitlines()[2:]:  # | task | version | filter | n-shot | metric | arrow | value | ± | stderr |
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[4]] = (cells[5], float(cells[6]), cells[8])
        metrics = report["results"][label]["gsm8k"]
        assert set(rows) == set(metrics)
        for name, entry in metrics.items():
            arrow, value, stderr = rows[name]
            assert arrow == "↑" and math.isclose(value, entry["value"], abs_tol=1e-4)
            assert stderr == "N/A" if not entry["ci"] else math.isclose(float(stderr), body["results"]["gsm8k"][
                f"{name}_stderr,none"], abs_tol=1e-4)
