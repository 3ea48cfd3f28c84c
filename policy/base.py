"""What every policy model provides to the learner and to deployment, plus the shared input handling.

A ``PolicyModel`` works on normalised tensors only: ``PolicyInputs`` (images as float in [0, 1], normalised
state, indicator tokens) and normalised action chunks. ``Normalizer`` maps to and from robot units with the
statistics of the training data, which travel in the checkpoint. ``policy.deploy.Policy`` wraps a model and a
normalizer into something an actor can call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from policy.config import PolicyConfig
from robot_io.images import letterbox_geometry


@dataclass
class PolicyInputs:
    """One batch of what a policy sees: images (B, 3, S, S) float in [0, 1], normalised state (B, D), and the
    indicator token per frame (B,) long: 0 negative, 1 positive, 2 dropped."""

    images: dict[str, torch.Tensor]
    state: torch.Tensor
    indicator: torch.Tensor
    task: list[str] | None = None

    def with_indicator(self, token: int) -> PolicyInputs:
        return PolicyInputs(self.images, self.state, torch.full_like(self.indicator, token), self.task)


@dataclass
class PolicyTargets:
    """Normalised action chunks (B, H, A), which steps of each chunk lie inside the episode (B, H), and a
    per-frame loss weight (B,): 1 for BC and RECAP, 0/1 for filtered BC, AWR weights for AWR."""

    actions: torch.Tensor
    valid: torch.Tensor
    weight: torch.Tensor


class PolicyModel(nn.Module, ABC):
    """A trainable policy network; see the module docstring for its units."""

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.config = config

    @abstractmethod
    def loss(self, inputs: PolicyInputs, targets: PolicyTargets) -> torch.Tensor:
        """Scalar training loss: the per-frame loss averaged with ``targets.weight`` (self-normalised)."""

    @abstractmethod
    def predict_chunk(
        self, inputs: PolicyInputs, cfg_beta: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(B, H, A) normalised action chunk for the indicators in ``inputs``, with classifier-free guidance
        against the dropped (unconditional) indicator when ``cfg_beta`` != 1."""


def weighted_mean(per_frame: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Sum of weight * loss over the sum of weights: filtered-BC's kept frames count fully whatever is dropped,
    and AWR becomes the self-normalised weighted regression."""
    return (per_frame * weight).sum() / weight.sum().clamp_min(1e-6)


def relative_to_state(
    actions: torch.Tensor,
    state: torch.Tensor,
    dims: list[int],
    sign: float = -1.0,
    state_dims: list[int] | None = None,
):
    """Chunks (B, H, A) with ``state[:, state_dims]`` (B, D) subtracted (sign -1: robot units -> offsets) or added
    back (sign +1) on the action dimensions ``dims`` (``state_dims`` None: the same indices); the others pass
    through."""
    if not dims:
        return actions
    out = actions.clone()
    out[..., dims] = actions[..., dims] + sign * state[:, None, dims if state_dims is None else state_dims]
    return out


def images_to_float(images: torch.Tensor, size: int, fit: str = "letterbox") -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, size, size) in [0, 1], area-resized; ``letterbox`` keeps the aspect ratio
    with black padding (``robot_io.images``), ``squash`` (older checkpoints) resizes plainly."""
    x = images.permute(0, 3, 1, 2).to(torch.float32) / 255.0
    src_h, src_w = x.shape[-2:]
    if fit == "squash" and (src_h, src_w) != (size, size):
        return F.interpolate(x, size=(size, size), mode="area")
    if (src_h, src_w) != (size, size):
        new_h, new_w, top, left = letterbox_geometry(src_h, src_w, size, size)
        x = F.interpolate(x, size=(new_h, new_w), mode="area")
        if (new_h, new_w) != (size, size):
            x = F.pad(x, (left, size - new_w - left, top, size - new_h - top), value=0.0)
    return x


class Normalizer:
    """Mean/std normalisation of state and action, from the training data's statistics.

    Action statistics are (A,) for absolute targets, or (H, A) per chunk step for relative actions (the offset
    from the current pose grows with the step, so one scale per step keeps every step's error equally weighted).
    """

    def __init__(self, stats: Mapping[str, Mapping[str, Any]]) -> None:
        def vec(column: str, key: str) -> torch.Tensor:
            return torch.as_tensor(np.asarray(stats[column][key], dtype=np.float32))

        self.state_mean, self.state_std = vec("state", "mean"), vec("state", "std").clamp_min(1e-3)
        self.action_mean, self.action_std = vec("action", "mean"), vec("action", "std").clamp_min(1e-3)

    def state(self, state: torch.Tensor) -> torch.Tensor:
        return (state - self.state_mean) / self.state_std

    def action(self, action: torch.Tensor) -> torch.Tensor:
        return (action - self.action_mean) / self.action_std

    def unaction(self, action: torch.Tensor) -> torch.Tensor:
        return action * self.action_std + self.action_mean

    def to_dict(self) -> dict[str, dict[str, list[float]]]:
        return {
            "state": {"mean": self.state_mean.tolist(), "std": self.state_std.tolist()},
            "action": {"mean": self.action_mean.tolist(), "std": self.action_std.tolist()},
        }
