"""Helpers shared by the value-model tests.

A module of its own rather than ``conftest``: tests/learners has a conftest too, and ``from conftest import`` picks
whichever was imported first when both folders run in one pytest session.
"""

from __future__ import annotations

import torch

from valuemodel.config import ValueModelConfig


def random_latents(config: ValueModelConfig, batch: int, latent_shape: tuple[int, int, int], seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return {c: torch.randn(batch, *latent_shape, generator=g) for c in config.cameras}
