"""Curation throughput on the real Alpaca file (52,002 records) and 13k / 26k subsets.

Runs the full pipeline (import, validation, normalisation, PII, exact + near dedup, quality,
decontamination against IFEval and the GSM8K test set) once per size, each in a fresh process so
that peak memory (ru_maxrss) belongs to that size alone. Prints wall and CPU seconds, records/s,
peak memory, per-step seconds, and the growth against the smallest size (the baseline: a linear
pipeline has time ratio == size ratio). A second table compares the vectorised MinHash signatures
with the baseline of datasketch's per-record ``MinHash.update_batch`` on the same records.

    python benchmarks/curate_throughput.py [--data ../shared/data/alpaca_data.json] [--sizes 13000,26000,52002]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def run_one(src: Path, outdir: Path) -> dict:
    from tunelens.data.config import CurateConfig
    from tunelens.data.curate import curate

    cfg = CurateConfig.from_dict({
        "license": "CC-BY-NC-4.0", "source": "alpaca",
        "decontaminate": {"files": [str(SHARED / "ifeval_input_data.jsonl"), str(SHARED / "gsm8k_test.jsonl")]},
    })
    wall, cpu = time.perf_counter(), time.process_time()
    report = curate([src], outdir, cfg)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "records": report.records_in, "kept": report.kept, "wall_s": wall, "cpu_s": cpu,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "steps": {s.name: s.seconds for s in report.steps},
    }


def minhash_comparison(rows: list[dict], n: int = 5000, num_perm: int = 128, ngram: int = 5) -> tuple[float, float]:
    """Seconds for n records: vectorised signatures vs datasketch MinHash.update_batch per record."""
    import numpy as np
    from datasketch import MinHash

    from tunelens.data.steps.dedup import minhash_signatures
    from tunelens.data.textkeys import TokenCache, ngram_hashes

    cache = TokenCache()
    seqs = [cache.hashes(f"{r['instruction']}\n\n{r['input']}\n{r['output']}") for r in rows[:n]]
    t = time.perf_counter()
    sig, _ = minhash_signatures(seqs, num_perm, ngram)
    ours = time.perf_counter() - t
    t = time.perf_counter()
    for i, seq in enumerate(seqs):
        shingles, _ = ngram_hashes([seq], ngram, short_as_one=True)
        m = MinHash(num_perm=num_perm, seed=1, hashfunc=int)
        m.update_batch(((shingles >> np.uint64(32)) ^ shingles).astype(np.uint32).tolist())
        if i < 50:
            assert np.array_equal(m.hashvalues, sig[i]), "signatures differ from datasketch"
    base = time.perf_counter() - t
    return ours, base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED / "alpaca_data.json", help="Alpaca JSON file.")
    ap.add_argument("--sizes", default="13000,26000,52002", help="Comma-separated subset sizes.")
    ap.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # child mode: curate this file
    args = ap.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(run_one(args.one, Path(tmp))))
        return

    rows = json.loads(args.data.read_text(encoding="utf-8"))
    sizes = [min(int(s), len(rows)) for s in args.sizes.split(",")]
    print(f"load average at start: {os.getloadavg()}  (2-core machine: anything above 2 means shared CPUs)")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            src = Path(tmp) / f"alpaca_{n}.json"
            src.write_text(json.dumps(rows[:n]), encoding="utf-8")
            out = subprocess.run([sys.executable, __file__, "--one", str(src)], capture_output=True, text=True, check=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = results[0]
    print(f"\n{'records':>8} {'kept':>7} {'wall s':>7} {'cpu s':>7} {'rec/s':>8} {'peak MB':>8} {'size x':>7} {'time x':>7}")
    for r in results:
        print(f"{r['records']:>8} {r['kept']:>7} {r['wall_s']:>7.1f} {r['cpu_s']:>7.1f} {r['records'] / r['wall_s']:>8.0f} "
              f"{r['peak_mb']:>8.0f} {r['records'] / base['records']:>7.2f} {r['wall_s'] / base['wall_s']:>7.2f}")
    print("\nper-step seconds:")
    names = list(results[-1]["steps"])
    print(f"{'records':>8} " + " ".join(f"{n[:12]:>12}" for n in names))
    for r in results:
        print(f"{r['records']:>8} " + " ".join(f"{r['steps'].get(n, 0):>12.2f}" for n in names))
    ours, baseline = minhash_comparison(rows)
    print(f"\nMinHash signatures, 5,000 records, 128 permutations: vectorised {ours:.2f} s, "
          f"datasketch per-record update_batch (baseline) {baseline:.2f} s, speed-up x{baseline / ours:.1f}")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
