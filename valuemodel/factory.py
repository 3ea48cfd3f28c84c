"""Build a value model from its config (the one place that maps ``config.kind`` to a class)."""

from __future__ import annotations

from valuemodel.base import ValueModelBase
from valuemodel.config import ValueModelConfig


def model_class(kind: str) -> type[ValueModelBase]:
    # Imported here so that importing the factory does not pull in diffusers for the static baseline.
    if kind == "viva":
        from valuemodel.viva import ViVaModel

        return ViVaModel
    if kind == "wvm":
        from valuemodel.wvm import WorldValueModel

        return WorldValueModel
    if kind == "static":
        from valuemodel.static import StaticValueModel

        return StaticValueModel
    raise ValueError(f"unknown value model kind {kind!r}")


def build_value_model(config: ValueModelConfig, load_weights: bool = True) -> ValueModelBase:
    """A fresh model for ``config``; ``load_weights`` reads pretrained backbone weights where the size has them."""
    return model_class(config.kind)(config, load_weights=load_weights)
