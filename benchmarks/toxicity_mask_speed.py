"""What toxicity version 3's random-token mask costs: version 2 (its artifact, no mask) against version 3 (shipped)
on the same 10,000 Alpaca replies as benchmarks/instrument_speed.py, best of 2, in one run.

    git show 61f5420:src/tunelens/safety/artifacts/toxicity.joblib > /tmp/tox_v2.joblib
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/toxicity_mask_speed.py --v2 /tmp/tox_v2.joblib
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from instrument_speed import _best, _cpu, _data  # noqa: E402

import tunelens.safety.instruments.toxicity as tox  # noqa: E402
from tunelens.safety.instruments import Example  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--v2", type=Path, required=True, help="version 2's artifact (from git, see above)")
    ap.add_argument("--n", type=int, default=10_000)
    a = ap.parse_args()
    replies, _ = _data(a.n)
    examples = [Example(r) for r in replies]
    v3 = tox.ToxicityInstrument()
    t3 = _best(lambda: v3.classify(examples), 2)
    keep = tox.mask_random_tokens
    tox.mask_random_tokens = lambda text: text  # version 2 as it was
    try:
        v2 = tox.ToxicityInstrument(a.v2)
        t2 = _best(lambda: v2.classify(examples), 2)
    finally:
        tox.mask_random_tokens = keep
    print(json.dumps({"cpu": _cpu(), "n": a.n, "version_2_seconds": round(t2, 2), "version_3_seconds": round(t3, 2)}))


if __name__ == "__main__":
    main()
