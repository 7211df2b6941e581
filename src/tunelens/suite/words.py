"""The suite's word lists (project-written, shipped as package data)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any


@lru_cache(maxsize=1)
def words() -> dict[str, Any]:
    text = resources.files("tunelens.suite").joinpath("wordlists.json").read_text(encoding="utf-8")
    return json.loads(text)
