"""The data and model contract every value model implements (ViVa, WVM, static baseline).

The learner adapts replay samples to ``ValueBatch``; actors and evaluation call ``predict``. Conventions:

- images: per camera, ``(B, 3, H, W)`` uint8 in [0, 255] or float in [0, 1], any size (the model resizes/pads);
- states: ``(B, D)`` float, already normalised to [-1, 1] with the checkpoint's norm stats;
- values: in the model range [-1, 1], higher is better (``valuemodel.targets`` maps episode outcomes into it);
- latents: optional precomputed VAE latents per camera, ``(B, C, h, w)`` (see ``encode_images``); when given they
  replace the images, which skips the VAE, the dominant CPU cost.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from valuemodel.config import ValueModelConfig


@dataclass
class ValueBatch:
    """One batch of value-model inputs and (for training) targets.

    ViVa and the static baseline use the single-time fields; WVM uses the ``video`` window fields.
    """

    task_id: torch.Tensor
    """(B,) long, index into ``config.tasks``."""
    images: dict[str, torch.Tensor] | None = None
    """camera -> (B, 3, H, W) frames at time t (uint8 or float in [0, 1])."""
    image_latents: dict[str, torch.Tensor] | None = None
    """camera -> (B, C, h, w) VAE latents of the same frames; used instead of ``images`` when set."""
    state: torch.Tensor | None = None
    """(B, D) proprioception at t, in [-1, 1]."""
    future_state: torch.Tensor | None = None
    """(B, D) proprioception at t + horizon, in [-1, 1] (ViVa training target)."""
    value_target: torch.Tensor | None = None
    """(B,) value at t in the model range [-1, 1] (training target)."""
    video: dict[str, torch.Tensor] | None = None
    """WVM: camera -> (B, T, 3, H, W) window of prefix, h current and (training) h future frames, time order."""
    video_latents: dict[str, torch.Tensor] | None = None
    """WVM: camera -> (B, T, C, h, w) latents of the window; used instead of ``video`` when set."""
    value_window: torch.Tensor | None = None
    """WVM: (B, T) values of every window frame in the model range (training; prefix values at inference)."""

    @property
    def batch_size(self) -> int:
        return int(self.task_id.shape[0])

    @property
    def device(self) -> torch.device:
        return self.task_id.device

    def to(self, device: torch.device | str) -> ValueBatch:
        """A copy with every tensor moved to ``device``."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                moved[f.name] = value.to(device)
            elif isinstance(value, dict):
                moved[f.name] = {k: v.to(device) for k, v in value.items()}
        return replace(self, **moved)

    def require(self, *names: str) -> None:
        """Raise a clear error when a field a model needs is missing."""
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise ValueError(f"ValueBatch is missing {missing}, which this model needs")


@dataclass
class ValuePrediction:
    """What ``predict`` returns."""

    value: torch.Tensor
    """(B,) value at t in the model range [-1, 1], higher is better."""
    future_state: torch.Tensor | None = None
    """(B, D) predicted proprioception at t + horizon (ViVa only)."""
    value_chunk: torch.Tensor | None = None
    """(B, h) values of the h current frames, oldest first (WVM only); ``value`` is its last entry."""


@runtime_checkable
class ValueModel(Protocol):
    """What the learner, the actors and evaluation code against."""

    config: ValueModelConfig

    def loss(self, batch: ValueBatch) -> dict[str, torch.Tensor]:
        """Scalar losses; ``"loss"`` is the total to back-propagate, the others are for logging."""
        ...

    def predict(self, batch: ValueBatch) -> ValuePrediction:
        """Batched inference without gradients."""
        ...

    def save(self, directory: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` into ``directory``."""
        ...

    @classmethod
    def load(cls, directory: str | Path) -> ValueModel:
        """Rebuild a model written by ``save``."""
        ...
