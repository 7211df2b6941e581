"""The public data files the evaluation reads, by name, and the project-written ones it ships.

Where the data folder is, and the readers, are tunelens.datafiles (re-exported here).
"""

from __future__ import annotations

import json
from typing import Any

from tunelens.datafiles import data_file, default_data_dir, read_csv, read_jsonl

__all__ = ["ADVBENCH_FILE", "ALPACA_FILE", "GSM8K_TEST_FILE", "GSM8K_TRAIN_FILE", "IFEVAL_FILE",
           "data_file", "default_data_dir", "package_json", "read_csv", "read_jsonl"]

IFEVAL_FILE = "ifeval_input_data.jsonl"
ADVBENCH_FILE = "advbench_harmful_behaviors.csv"
GSM8K_TEST_FILE = "gsm8k_test.jsonl"
GSM8K_TRAIN_FILE = "gsm8k_train.jsonl"
ALPACA_FILE = "alpaca_data.json"


def package_json(name: str) -> Any:
    """A JSON file shipped under ``tunelens/safety/data`` (project-written content)."""
    from importlib import resources

    return json.loads(resources.files("tunelens.safety").joinpath("data", name).read_text(encoding="utf-8"))
