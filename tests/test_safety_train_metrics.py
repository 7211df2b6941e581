"""The pooled-rate verdicts the cards quote: "shown" only when the whole interval is on the target's side."""

from __future__ import annotations

import pytest

from tunelens.safety.train_metrics import pooled_rate, wilson


def test_pooled_rate_sums_sources_and_keeps_each():
    out = pooled_rate({"a": (95, 100), "b": (180, 200)})
    assert (out["k"], out["n"], out["rate"]) == (275, 300, round(275 / 300, 4))
    assert out["wilson95"] == wilson(275, 300)
    assert out["by_source"]["a"] == {"k": 95, "n": 100, "rate": 0.95, "wilson95": wilson(95, 100)}
    assert "verdict" not in out  # no target given


@pytest.mark.parametrize("parts, verdict", [
    ({"a": (990, 1000)}, "shown"),             # 0.99, interval [0.982, 0.995] above 0.95
    ({"a": (96, 100)}, "met as measured"),     # 0.96, interval reaches below 0.95
    ({"a": (608, 651)}, "not met"),            # 0.934
])
def test_at_least_verdicts(parts, verdict):
    out = pooled_rate(parts, "at_least", 0.95)
    assert out["verdict"] == verdict and out["target"] == ">= 0.95"


@pytest.mark.parametrize("parts, verdict", [
    ({"a": (2, 924)}, "shown"),                # 0.2%, upper bound 0.8%
    ({"a": (1, 150)}, "met as measured"),      # 0.7%, upper bound 3.7%
    ({"a": (3, 150)}, "not met"),              # 2%
])
def test_at_most_verdicts(parts, verdict):
    assert pooled_rate(parts, "at_most", 0.01)["verdict"] == verdict


def test_a_bad_side_is_an_error():
    with pytest.raises(ValueError, match="side"):
        pooled_rate({"a": (1, 2)}, "above", 0.5)
