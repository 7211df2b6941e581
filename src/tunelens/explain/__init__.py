"""tunelens.explain: token attribution, faithfulness, what tuning changed, training-data attribution."""

from tunelens.explain.attribution import METHODS, Attribution, attribute

__all__ = ["METHODS", "Attribution", "attribute"]
