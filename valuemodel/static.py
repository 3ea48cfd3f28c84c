"""Static-snapshot baseline: current images + proprioception + task -> value, with a small CNN and an MLP.

It sees one instant, like ViVa's conditions, but has no generative prior and predicts no future; comparing it
with ViVa and WVM on the same data isolates what the video backbone adds. Trained by MSE on the same value
targets. The CNN is shared across cameras; camera features are concatenated in ``config.cameras`` order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from valuemodel.base import ValueModelBase
from valuemodel.config import ValueModelConfig
from valuemodel.images import fit_images
from valuemodel.interface import ValueBatch, ValuePrediction

TASK_EMBED_DIM = 32


def conv_stage(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1),
        nn.GroupNorm(min(8, out_channels), out_channels),
        nn.SiLU(),
    )


class StaticValueModel(ValueModelBase):
    """Static baseline; implements the ``ValueModel`` protocol (``future_state`` is always None)."""

    kind = "static"

    def __init__(self, config: ValueModelConfig, load_weights: bool = True) -> None:
        # load_weights is accepted for the common constructor signature; this model has no pretrained weights.
        super().__init__(config)
        width = config.static_channels
        self.encoder = nn.Sequential(
            conv_stage(3, width),
            conv_stage(width, 2 * width),
            conv_stage(2 * width, 4 * width),
            conv_stage(4 * width, 8 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.task_embedding = nn.Embedding(len(config.tasks), TASK_EMBED_DIM)
        features = len(config.cameras) * 8 * width + config.state_dim + TASK_EMBED_DIM
        self.head = nn.Sequential(
            nn.Linear(features, config.static_hidden),
            nn.SiLU(),
            nn.Linear(config.static_hidden, config.static_hidden),
            nn.SiLU(),
            nn.Linear(config.static_hidden, 1),
        )

    def forward(self, batch: ValueBatch) -> torch.Tensor:
        """(B,) values in the model range (unbounded; trained towards [-1, 1])."""
        batch.require("images", "state")
        missing = [c for c in self.config.cameras if c not in batch.images]
        if missing:
            raise KeyError(f"images lack cameras {missing}; have {sorted(batch.images)}")
        height, width = self.config.image_height, self.config.image_width
        pixels = torch.cat(
            [fit_images(batch.images[c].to(self.device), height, width) for c in self.config.cameras]
        )
        per_camera = self.encoder(pixels).chunk(len(self.config.cameras))
        task = self.task_embedding(batch.task_id.to(self.device).long())
        features = torch.cat([*per_camera, batch.state.to(self.device, torch.float32), task], dim=1)
        return self.head(features).squeeze(1)

    def loss(self, batch: ValueBatch) -> dict[str, torch.Tensor]:
        batch.require("value_target")
        value_loss = F.mse_loss(self(batch), batch.value_target.to(self.device, torch.float32))
        return {"loss": value_loss, "loss_value": value_loss.detach()}

    @torch.no_grad()
    def predict(self, batch: ValueBatch) -> ValuePrediction:
        return ValuePrediction(value=self(batch))
