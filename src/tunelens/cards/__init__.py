"""Model and dataset cards built from a run directory's artifacts (never hand-written numbers).

The model card is a ``huggingface_hub.ModelCard`` whose YAML carries a ``model-index`` with every
evaluated metric (value exactly as in results.json; CI and n in the metric's ``args``). The
dataset card is the datasheet ``tunelens data curate`` wrote.
"""

from tunelens.cards.artifacts import LAYOUT, RunArtifacts, load_run
from tunelens.cards.model_card import build_model_card, write_cards

__all__ = ["LAYOUT", "RunArtifacts", "build_model_card", "load_run", "write_cards", "regenerate"]


def regenerate(run_dir) -> dict[str, str]:
    """Rebuild the cards of a finished run; returns the paths written (relative to the run dir)."""
    return write_cards(load_run(run_dir))
