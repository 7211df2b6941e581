"""Issue 16, point 6: library noise is off by default and back with --verbose; a curation step over
thousands of records reports progress within the step (for the bar and its ETA)."""

from __future__ import annotations

import logging
import warnings

import pytest

from tunelens.progress import advance, quiet_libraries, reporting, track



@pytest.fixture(autouse=True)
def _restore_quiet():
    filters = list(warnings.filters)
    yield
    quiet_libraries(verbose=True)  # leave the process as the other tests expect it
    warnings.filters[:] = filters
    warnings._filters_mutated()  # noqa: SLF001


# The command as a user runs it, in a fresh process (library loggers and progress switches are
# process-wide, so an in-process run would depend on which test imported transformers first), with
# a model loader that also makes the noise transformers makes: a deprecation FutureWarning and a
# warning on its logger.
NOISY_CLI = """
import logging, sys, warnings
import tunelens.models as models
real = models.load_model
def noisy_load(*a, **kw):
    warnings.warn("`torch_dtype` is deprecated! Use `dtype` instead!", FutureWarning, stacklevel=1)
    logging.getLogger("transformers.modeling_utils").warning("Some weights were not initialized")
    return real(*a, **kw)
models.load_model = noisy_load
from tunelens.cli import main
sys.argv = ["tunelens", *sys.argv[1:]]
main()
"""


def test_eval_on_tiny_model_is_quiet_by_default_and_verbose_on_request(tmp_path, tiny_model_path):
    import os
    import subprocess
    import sys

    def run(*flags):
        args = [*flags, "eval", "-m", str(tiny_model_path), "-s", "gsm8k", "--limit", "1", "--max-new-tokens", "2",
                "--few-shot-suites", "none", "--no-cache", "-o", str(tmp_path / "o")]
        env = {k: v for k, v in os.environ.items() if "PROGRESS_BARS" not in k and k != "TRANSFORMERS_VERBOSITY"}
        out = subprocess.run([sys.executable, "-c", NOISY_CLI, *args], capture_output=True, text=True, timeout=600,
                             env={**env, "OMP_NUM_THREADS": "1"})
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout + out.stderr

    quiet = run()
    for noise in ("Loading weights", "FutureWarning", "torch_dtype", "Some weights"):
        assert noise not in quiet, noise
    assert "exact_match_0shot" in quiet  # the command's own output is all there
    loud = run("--verbose")
    for noise in ("Loading weights", "FutureWarning", "Some weights"):
        assert noise in loud, noise


def test_track_reports_only_when_someone_listens():
    assert list(track(range(5), "x")) == [0, 1, 2, 3, 4]  # no reporter: the plain iterable
    seen = []
    with reporting(lambda label, done, total: seen.append((label, done, total))):
        assert sum(track(range(1000), "items")) == sum(range(1000))
        advance("chunks", 3, 4)
    assert seen[0] == ("items", 0, 1000) and ("items", 1000, 1000) in seen
    assert 50 <= len(seen) <= 110  # about every 1%, not per item
    assert seen[-1] == ("chunks", 3, 4)


def test_curation_over_thousands_of_records_reports_progress_per_step(tmp_path):
    from tunelens.data.config import CurateConfig
    from tunelens.data.curate import PROGRESS_MIN_ITEMS, curate
    from tunelens.records import make_conversation

    import random

    rng = random.Random(0)
    words = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ro", "sa", "ti", "vu", "ze") for b in "aeiouxyzqw"]
    n = PROGRESS_MIN_ITEMS + 500

    def text(k: int) -> str:
        return " ".join(rng.choice(words) for _ in range(k))

    records = [make_conversation([{"role": "user", "content": f"Explain {text(12)}. Mail me at a{i}@example.com"},
                                  {"role": "assistant", "content": f"Here is the explanation: {text(30)}."}],
                                 source="test", source_file=None, row=i, license="MIT") for i in range(n)]
    seen: dict[str, list[tuple[int, int]]] = {}
    report = curate(records, tmp_path / "o", CurateConfig(license="MIT"),
                    on_progress=lambda label, done, total: seen.setdefault(label, []).append((done, total)))
    assert report.records_in == n and report.kept > PROGRESS_MIN_ITEMS
    for label in ("pii: texts", "dedup_exact: records", "dedup_near: words", "dedup_near: MinHash shingles",
                  "dedup_near: LSH", "quality: records"):
        assert label in seen, sorted(seen)
        updates = seen[label]
        total = updates[-1][1]
        assert total >= PROGRESS_MIN_ITEMS and updates[-1][0] == total
        assert [d for d, _ in updates] == sorted(d for d, _ in updates)
    assert len(seen["dedup_near: LSH"]) > 10  # progress within the step, not only at its end
