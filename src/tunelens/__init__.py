"""tunelens: instruction tuning you can see into.

Stages (each a subpackage with a pure core and a thin CLI):
data -> train -> evaluate -> explain -> serve -> (feedback) -> data/train; cards and run on top.
"""

__version__ = "0.1.0"

from tunelens.records import (  # noqa: E402
    ConversationRecord,
    Message,
    PreferenceRecord,
    Provenance,
    load_dataset,
    read_records,
    write_jsonl,
)

__all__ = [
    "ConversationRecord",
    "Message",
    "PreferenceRecord",
    "Provenance",
    "__version__",
    "load_dataset",
    "read_records",
    "write_jsonl",
]
