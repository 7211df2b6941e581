"""completeness_gap: how far integrated-gradients rows are from f(x) - f(baseline)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tunelens.explain import attribute
from tunelens.explain.gradients import completeness_gap

from _toy import one_thread, trigger_example

pytestmark = pytest.mark.numeric


def test_gap_shrinks_with_steps_and_matches_the_row_sums(trigger_model):
    model, tok = trigger_model
    messages, answer, _ = trigger_example(random.Random(3))
    with one_thread():
        coarse = attribute(model, tok, messages, answer, "integrated_gradients", steps=1)
        fine = attribute(model, tok, messages, answer, "integrated_gradients", steps=48, step_batch=16)
        g_coarse = completeness_gap(model, coarse.input_ids, coarse.output_ids, coarse.matrix)
        g_fine = completeness_gap(model, fine.input_ids, fine.output_ids, fine.matrix)
    # gaps are exactly row sums minus the expected difference, for the same f(x) - f(baseline):
    # the same arithmetic on the same numbers (only float64 vs fp32 summation of ~10 entries).
    assert np.allclose(np.array(g_fine["gaps"]), fine.matrix.sum(1) - np.array(g_fine["expected"]), rtol=1e-5, atol=1e-6)
    # f(x) - f(baseline) does not depend on the steps: the same two forwards, bit for bit.
    assert np.allclose(g_coarse["expected"], g_fine["expected"], rtol=1e-6, atol=1e-7)
    assert g_fine["relative_gap"] < 0.05
    assert g_fine["relative_gap"] < g_coarse["relative_gap"]


def test_token_id_baseline_and_a_wrong_matrix(trigger_model):
    model, tok = trigger_model
    messages, answer, _ = trigger_example(random.Random(4))
    with one_thread():
        attr = attribute(model, tok, messages, answer, "integrated_gradients", steps=8)
        by_mean = completeness_gap(model, attr.input_ids, attr.output_ids, attr.matrix)
        by_token = completeness_gap(model, attr.input_ids, attr.output_ids, attr.matrix, baseline=0)
        zeros = completeness_gap(model, attr.input_ids, attr.output_ids, np.zeros_like(attr.matrix))
    assert not np.allclose(by_mean["expected"], by_token["expected"])  # a different baseline prompt
    assert zeros["relative_gap"] == pytest.approx(1.0)  # an empty explanation misses everything


def test_cli_ig_baseline_option(tmp_path, tiny_model_path):
    import json

    from typer.testing import CliRunner

    from tunelens.cli import app

    out = tmp_path / "ex"
    args = ["explain", "-m", str(tiny_model_path), "-p", "Say hi.", "--response", "hi there", "--method", "ig",
            "--steps", "2", "--no-faithfulness", "-o", str(out)]
    res = CliRunner().invoke(app, [*args, "--ig-baseline", "zero"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "attributions.json").read_text())
    assert doc["items"][0]["attribution"]["params"]["baseline"] == "zero"
    bad = CliRunner().invoke(app, [*args, "--ig-baseline", "noise"])
    assert bad.exit_code != 0 and "--ig-baseline must be mean, pad or zero" in str(bad.exception)
