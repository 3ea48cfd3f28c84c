"""The built-in policy: small enough to learn the simulated box assembly on 2 CPU cores in minutes.

    camera images -- conv encoder per camera (random-shift augmentation) --\
    state (normalised) -- MLP ---------------------------------------------+-- context MLP -- action-chunk head
    advantage indicator -- embedding (negative / positive / dropped) ------/

Two heads. ``flow`` (default) is a flow-matching head: it learns the velocity field that carries Gaussian noise
to the action chunk, x_tau = tau a + (1 - tau) eps with target a - eps, and integrates it with Euler steps at
inference, so classifier-free guidance mixes velocities, v = v_uncond + beta (v_cond - v_uncond), as RECAP
does. ``l1`` regresses the chunk directly (ACT-style, unimodal); guidance is then applied to the predicted
actions themselves, which is the same extrapolation but on one-shot outputs rather than on a flow.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from policy.base import PolicyInputs, PolicyModel, PolicyTargets, weighted_mean
from policy.conditioning import DROPPED, NUM_INDICATOR_TOKENS, classifier_free_guidance
from policy.config import PolicyConfig


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ-style augmentation: replicate-pad each image by ``pad`` pixels and crop it back at a random offset."""
    if pad <= 0:
        return images
    batch, channels, height, width = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    dy = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
    rows = (dy[:, None] + torch.arange(height))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(width))[:, None, None, :]
    index_b = torch.arange(batch)[:, None, None, None]
    index_c = torch.arange(channels)[None, :, None, None]
    return padded[index_b, index_c, rows, cols]


class SpatialSoftmax(nn.Module):
    """Each channel's softmax-weighted mean image coordinate, (B, C, H, W) -> (B, 2 C) in [-1, 1]: a keypoint
    per channel, so an object's position reaches the head as numbers rather than as a pattern to decode."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = features.shape
        weights = features.flatten(2).softmax(-1).reshape(batch, channels, height, width)
        ys = torch.linspace(-1.0, 1.0, height, device=features.device)
        xs = torch.linspace(-1.0, 1.0, width, device=features.device)
        return torch.cat([(weights.sum(-1) * ys).sum(-1), (weights.sum(-2) * xs).sum(-1)], dim=-1)


class CameraEncoder(nn.Module):
    """Four 3x3 conv layers (three stride-2), then a linear map of the flattened map, with spatial-softmax
    keypoints beside it (``keypoints``): both keep *where* things are, which placing and grasping need, at
    little cost for 64-96 px images."""

    def __init__(self, image_size: int, channels: int, feature_dim: int, keypoints: bool = False) -> None:
        super().__init__()
        wide = 2 * channels

        def block(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, stride, 1), nn.GroupNorm(8, c_out), nn.ReLU()]

        self.convs = nn.Sequential(
            *block(3, channels, 2), *block(channels, wide, 2), *block(wide, wide, 2), *block(wide, wide, 1)
        )
        side = math.ceil(math.ceil(math.ceil(image_size / 2) / 2) / 2)
        self.keypoints = SpatialSoftmax() if keypoints else None
        extra = 2 * wide if keypoints else 0
        # Flatten is a no-op on the concatenated features; it keeps the parameter names of older checkpoints.
        self.project = nn.Sequential(
            nn.Flatten(), nn.Linear(wide * side * side + extra, feature_dim), nn.LayerNorm(feature_dim)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.convs(images * 2.0 - 1.0)
        parts = [features.flatten(1)]
        if self.keypoints is not None:
            parts.append(self.keypoints(features))
        return self.project(torch.cat(parts, dim=-1))


def time_embedding(tau: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of flow time tau in [0, 1] (B,) -> (B, dim)."""
    half = dim // 2
    frequencies = torch.exp(torch.linspace(0.0, math.log(1000.0), half, device=tau.device))
    angles = tau[:, None] * frequencies[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


class BuiltinPolicyModel(PolicyModel):
    """See the module docstring."""

    TIME_DIM = 64

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__(config)
        c = config
        self.encoders = nn.ModuleDict(
            {
                cam: CameraEncoder(c.image_size, c.encoder_channels, c.feature_dim, c.encoder_keypoints)
                for cam in c.cameras
            }
        )
        self.state_mlp = mlp([c.state_dim, c.feature_dim, c.feature_dim])
        self.indicator_embedding = nn.Embedding(NUM_INDICATOR_TOKENS, c.feature_dim)
        context_in = c.feature_dim * (len(c.cameras) + 2)
        self.context = nn.Sequential(mlp([context_in, c.hidden_dim, c.hidden_dim]), nn.GELU())
        chunk_dim = c.chunk_size * c.action_dim
        if c.head == "flow":
            self.head = mlp(
                [
                    c.hidden_dim + chunk_dim + self.TIME_DIM,
                    c.hidden_dim,
                    c.hidden_dim,
                    c.hidden_dim,
                    chunk_dim,
                ]
            )
        else:
            self.head = mlp([c.hidden_dim, c.hidden_dim, c.hidden_dim, chunk_dim])

    def observation_features(
        self, inputs: PolicyInputs, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Camera and state features (B, F), computed once per observation whatever the indicator."""
        parts = []
        for cam, encoder in self.encoders.items():
            images = inputs.images[cam]
            if self.training:
                images = random_shift(images, self.config.shift_pixels, generator)
            parts.append(encoder(images))
        parts.append(self.state_mlp(inputs.state))
        return torch.cat(parts, dim=-1)

    def context_of(self, features: torch.Tensor, indicator: torch.Tensor) -> torch.Tensor:
        return self.context(torch.cat([features, self.indicator_embedding(indicator)], dim=-1))

    def velocity(self, context: torch.Tensor, noisy: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        batch = noisy.shape[0]
        flat = torch.cat([context, noisy.reshape(batch, -1), time_embedding(tau, self.TIME_DIM)], dim=-1)
        return self.head(flat).reshape(noisy.shape)

    def loss(self, inputs: PolicyInputs, targets: PolicyTargets) -> torch.Tensor:
        context = self.context_of(self.observation_features(inputs), inputs.indicator)
        actions = targets.actions
        valid = targets.valid.to(actions.dtype)
        if self.config.head == "flow":
            noise = torch.randn_like(actions)
            tau = torch.rand(actions.shape[0], device=actions.device)
            noisy = tau[:, None, None] * actions + (1.0 - tau[:, None, None]) * noise
            error = (self.velocity(context, noisy, tau) - (actions - noise)).square()
        else:
            predicted = self.head(context).reshape(actions.shape)
            error = (predicted - actions).abs()
        per_frame = (error.mean(-1) * valid).sum(-1) / valid.sum(-1).clamp_min(1.0)
        return weighted_mean(per_frame, targets.weight)

    @torch.no_grad()
    def predict_chunk(
        self, inputs: PolicyInputs, cfg_beta: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        c = self.config
        features = self.observation_features(inputs)
        batch = features.shape[0]
        guided = cfg_beta != 1.0
        if guided:
            # One pass over a doubled batch: the first half conditional, the second unconditional.
            features = torch.cat([features, features])
            indicator = torch.cat([inputs.indicator, torch.full_like(inputs.indicator, DROPPED)])
        else:
            indicator = inputs.indicator
        context = self.context_of(features, indicator)

        def guide(output: torch.Tensor) -> torch.Tensor:
            return classifier_free_guidance(output[:batch], output[batch:], cfg_beta) if guided else output

        shape = (batch, c.chunk_size, c.action_dim)
        if c.head == "l1":
            return guide(self.head(context).reshape(context.shape[0], *shape[1:]))
        x = torch.randn(shape, generator=generator).to(features.device)
        for k in range(c.flow_steps):
            tau = torch.full((context.shape[0],), k / c.flow_steps, device=features.device)
            noisy = torch.cat([x, x]) if guided else x
            x = x + guide(self.velocity(context, noisy, tau)) / c.flow_steps
        return x
