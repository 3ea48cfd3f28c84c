"""Tiny policies and fake observations shared by the policy tests."""

from __future__ import annotations

import numpy as np
import torch

from policy.base import Normalizer, PolicyInputs, PolicyTargets
from policy.config import PolicyConfig
from robot_io.spec import Observation

CAMERAS = ["front", "wrist"]


def tiny_config(**overrides) -> PolicyConfig:
    base = dict(
        cameras=CAMERAS,
        image_size=32,
        state_dim=4,
        action_dim=3,
        chunk_size=4,
        execute_steps=2,
        encoder_channels=8,
        feature_dim=32,
        hidden_dim=64,
        flow_steps=4,
        # Absolute actions keep the expected values of the chunking tests simple; relative ones are tested alone.
        relative_action_dims=[],
    )
    return PolicyConfig(**{**base, **overrides})


def unit_normalizer(config: PolicyConfig) -> Normalizer:
    return Normalizer(
        {
            "state": {"mean": np.zeros(config.state_dim), "std": np.ones(config.state_dim)},
            "action": {"mean": np.full(config.action_dim, 0.5), "std": np.full(config.action_dim, 2.0)},
        }
    )


def tiny_batch(config: PolicyConfig, size: int = 8, seed: int = 0) -> tuple[PolicyInputs, PolicyTargets]:
    g = torch.Generator().manual_seed(seed)
    side = config.image_size
    inputs = PolicyInputs(
        images={c: torch.rand(size, 3, side, side, generator=g) for c in config.cameras},
        state=torch.randn(size, config.state_dim, generator=g),
        indicator=torch.randint(0, 3, (size,), generator=g),
    )
    targets = PolicyTargets(
        actions=torch.randn(size, config.chunk_size, config.action_dim, generator=g),
        valid=torch.ones(size, config.chunk_size, dtype=torch.bool),
        weight=torch.ones(size),
    )
    return inputs, targets


def fake_observation(config: PolicyConfig, seed: int = 0, height: int = 48) -> Observation:
    rng = np.random.default_rng(seed)
    return Observation(
        images={c: rng.integers(0, 256, (height, height, 3), dtype=np.uint8) for c in config.cameras},
        state=rng.normal(size=config.state_dim).astype(np.float32),
        timestamp=0.0,
    )
