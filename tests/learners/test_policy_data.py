"""What each extraction method feeds the policy: indicators (with 30% dropout), weights and kept frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learners.policy_data import BatchConverter, delta_scales, filtered_bc_keep
from policy.base import Normalizer
from policy.conditioning import DROPPED, NEGATIVE, POSITIVE
from policy.config import PolicyConfig


def replay_batch(size: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "images.front": torch.randint(0, 256, (size, 16, 16, 3), dtype=torch.uint8, generator=g),
        "state": torch.randn(size, 2, generator=g),
        "action": torch.randn(size, 3, 1, generator=g),
        "action_valid": torch.ones(size, 3, dtype=torch.bool),
        "indicator": torch.rand(size, generator=g) < 0.4,
        "advantage": torch.randn(size, generator=g),
        "task": ["a"] * (size // 2) + ["b"] * (size - size // 2),
    }


def converter(extraction: str, **kwargs) -> BatchConverter:
    config = PolicyConfig(
        cameras=["front"],
        image_size=16,
        state_dim=2,
        action_dim=1,
        chunk_size=3,
        execute_steps=1,
        relative_action_dims=[],
    )
    stats = {"state": {"mean": [1.0, 0.0], "std": [2.0, 1.0]}, "action": {"mean": [0.0], "std": [1.0]}}
    return BatchConverter(config, Normalizer(stats), extraction, **kwargs)


def test_recap_indicator_dropout_rate_is_thirty_percent():
    convert = converter("recap", seed=0)
    tokens = torch.cat([convert(replay_batch(2000, seed))[0].indicator for seed in range(10)])
    assert (tokens == DROPPED).float().mean().item() == pytest.approx(0.3, abs=0.015)
    batch = replay_batch(2000, 0)
    inputs, targets = converter("recap", seed=1)(batch)
    kept = inputs.indicator != DROPPED
    expected = torch.where(batch["indicator"], POSITIVE, NEGATIVE)
    assert torch.equal(inputs.indicator[kept], expected[kept])
    assert torch.equal(targets.weight, torch.ones(2000))


def test_inputs_are_normalised_and_images_float():
    batch = replay_batch(4)
    inputs, targets = converter("bc")(batch)
    torch.testing.assert_close(inputs.state[:, 0], (batch["state"][:, 0] - 1.0) / 2.0)
    assert inputs.images["front"].shape == (4, 3, 16, 16) and inputs.images["front"].max() <= 1.0
    assert targets.actions.shape == (4, 3, 1)
    assert (inputs.indicator == DROPPED).all()


def test_awr_weights_use_per_task_scale_and_cap():
    batch = replay_batch(6)
    batch["advantage"] = torch.tensor([0.0, 1.0, 10.0, 0.0, -2.0, 2.0])
    _, targets = converter("awr", awr_scales={"a": 1.0, "b": 2.0}, awr_temperature=1.0, awr_cap=2.0)(batch)
    expected = [1.0, np.e**1.0, 2.0, 1.0, np.e**-1.0, np.e**1.0]
    np.testing.assert_allclose(targets.weight.numpy(), np.minimum(expected, 2.0), rtol=1e-5)
    with pytest.raises(ValueError, match="scales"):
        converter("awr")


def test_filtered_bc_keeps_nonnegative_or_top_fraction_per_task():
    deltas = np.array([-1.0, 0.0, 2.0, 3.0, -5.0, -4.0, -3.0, -2.0])
    tasks = np.array(["a"] * 4 + ["b"] * 4, dtype=object)
    np.testing.assert_array_equal(filtered_bc_keep(deltas, tasks, "nonnegative", 0.7), deltas >= 0)
    top = filtered_bc_keep(deltas, tasks, "top_fraction", 0.5)
    np.testing.assert_array_equal(top, [False, False, True, True, False, False, True, True])
    assert delta_scales(np.array([1.0, 1.0, 0.0, 2.0]), np.array(["a", "a", "b", "b"])) == {
        "a": 1.0,
        "b": 1.0,
    }


def test_relative_action_dims_are_offsets_from_the_state_at_the_frame():
    config = PolicyConfig(
        cameras=["front"],
        image_size=16,
        state_dim=2,
        action_dim=2,
        chunk_size=3,
        execute_steps=1,
        relative_action_dims=[1],
    )
    stats = {
        "state": {"mean": [0.0, 0.0], "std": [1.0, 1.0]},
        "action": {"mean": [0.0, 0.5], "std": [1.0, 2.0]},
    }
    batch = replay_batch(4)
    batch["action"] = torch.randn(4, 3, 2)
    _, targets = BatchConverter(config, Normalizer(stats), "bc")(batch)
    torch.testing.assert_close(targets.actions[..., 0], batch["action"][..., 0])
    expected = (batch["action"][..., 1] - batch["state"][:, None, 1] - 0.5) / 2.0
    torch.testing.assert_close(targets.actions[..., 1], expected)
