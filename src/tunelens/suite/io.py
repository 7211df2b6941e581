"""Writing the suite to disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunelens.records import write_jsonl
from tunelens.suite.build import SPLITS, generate_suite, summarise


def write_suite(outdir: str | Path, n: int, seed: int = 0) -> dict[str, Any]:
    """Write train.jsonl, test.jsonl, heldout.jsonl and summary.json into ``outdir``; return the summary."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    splits = generate_suite(n, seed)
    for split in SPLITS:
        write_jsonl(outdir / f"{split}.jsonl", splits[split])
    summary = {"n": n, "seed": seed, **summarise(splits)}
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
