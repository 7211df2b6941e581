"""The family registry: which generator, which category, trained or held out, and its weight."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from tunelens.suite import fam_content, fam_format, fam_reasoning, fam_safety
from tunelens.suite.task import Task


@dataclass(frozen=True)
class Family:
    name: str
    category: str
    make: Callable[[random.Random], Task]
    heldout: bool = False  # never in train: measures generalisation to a new kind of instruction
    weight: float = 1.0  # share of its split, relative to the other families there


FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("json_keys", "format", fam_format.json_keys),
    Family("bullets", "format", fam_format.bullets),
    Family("letter_case", "format", fam_format.letter_case),
    Family("max_words", "format", fam_format.max_words),
    Family("start_phrase", "format", fam_format.start_phrase),
    Family("end_phrase", "format", fam_format.end_phrase, heldout=True),
    Family("no_commas", "format", fam_format.no_commas, heldout=True),
    Family("extract_emails", "extraction", fam_content.extract_emails),
    Family("extract_dates", "extraction", fam_content.extract_dates),
    Family("extract_numbers", "extraction", fam_content.extract_numbers, heldout=True),
    Family("sorted_list", "transformation", fam_content.sorted_list),
    Family("reversed_list", "transformation", fam_content.reversed_list),
    Family("count", "transformation", fam_content.count),
    Family("deduplicated_list", "transformation", fam_content.deduplicated_list, heldout=True),
    Family("arithmetic", "arithmetic", fam_reasoning.arithmetic, weight=1.5),
    Family("classify_sentiment", "classification", fam_reasoning.classify_sentiment),
    Family("classify_topic", "classification", fam_reasoning.classify_topic, heldout=True),
    Family("safety", "safety", fam_safety.safety, weight=2.5),
]}

TRAINED_FAMILIES = [f.name for f in FAMILIES.values() if not f.heldout]
HELDOUT_FAMILIES = [f.name for f in FAMILIES.values() if f.heldout]
