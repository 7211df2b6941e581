"""Where the public data files live, and readers for them (the evaluation's, the toxicity
classifier's training data, explanations' prompts).

The data folder defaults to ``../shared/data`` beside the project root when it exists; the
``TUNELENS_DATA_DIR`` environment variable or ``--data-dir`` override it. A missing file raises a
``TunelensError`` naming the exact path looked for.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from tunelens.errors import TunelensError

_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def default_data_dir() -> Path:
    """``TUNELENS_DATA_DIR`` if set, else ``../shared/data`` beside the project root (or the cwd)."""
    env = os.environ.get("TUNELENS_DATA_DIR")
    if env:
        return Path(env).expanduser()
    for root in (_PROJECT_ROOT, Path.cwd()):
        candidate = (root.parent / "shared" / "data").resolve()
        if candidate.is_dir():
            return candidate
    return (_PROJECT_ROOT.parent / "shared" / "data").resolve()


def data_file(name: str, data_dir: str | Path | None = None) -> Path:
    """The path of data file ``name``; raises a clear error naming the path when it is missing."""
    base = Path(data_dir).expanduser() if data_dir else default_data_dir()
    path = base / name
    if not path.is_file():
        raise TunelensError(
            f"data file not found: looked for {path}. Pass --data-dir (or set TUNELENS_DATA_DIR) "
            f"to the folder that holds {name}."
        )
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise TunelensError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from exc
    return rows


def read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise TunelensError(f"{path}: missing column(s) {', '.join(missing)} (found {reader.fieldnames})")
        return list(reader)


# The Hugging Face Hub dataset of each public data file that has one (file name -> dataset id), for
# the `datasets` of model cards and the `source_datasets` of dataset cards. A file not listed here
# (the built-in suite, a user's own file) has no hub id: cards describe it in their text instead.
HUB_DATASETS = {
    "alpaca_data.json": "tatsu-lab/alpaca",
    "gsm8k_train.jsonl": "openai/gsm8k",
    "gsm8k_test.jsonl": "openai/gsm8k",
    "hh_rlhf_helpful_base_test.jsonl.gz": "Anthropic/hh-rlhf",
    "hh_rlhf_harmless_base_test.jsonl.gz": "Anthropic/hh-rlhf",
    "deepset_prompt_injections_train.jsonl": "deepset/prompt-injections",
    "deepset_prompt_injections_test.jsonl": "deepset/prompt-injections",
    "ifeval_input_data.jsonl": "google/IFEval",
    "coconot_pref.jsonl": "allenai/coconot",
    "coconot_contrast_eval.jsonl": "allenai/coconot",
    "jbb_harmful_behaviors.csv": "JailbreakBench/JBB-Behaviors",
    "jbb_benign_behaviors.csv": "JailbreakBench/JBB-Behaviors",
    "truthfulqa.csv": "truthfulqa/truthful_qa",
    "truthfulqa_v1.csv": "truthfulqa/truthful_qa",
}


def hub_dataset_id(source_file: str | None) -> str | None:
    """The hub dataset id of a record's ``provenance.source_file``: ``hf:org/name[:split]`` imports
    name it, the public data files are looked up in HUB_DATASETS (by file name); else None."""
    if not source_file:
        return None
    text = str(source_file)
    if text.startswith("hf:"):
        return text[3:].split(":", 1)[0] or None
    return HUB_DATASETS.get(Path(text).name)
