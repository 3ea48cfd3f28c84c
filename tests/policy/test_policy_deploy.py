"""Deployment: chunks executed open-loop or temporally ensembled, and the indicator fixed at deployment."""

from __future__ import annotations

import numpy as np
import torch
from policy_helpers import fake_observation, tiny_config, unit_normalizer

from policy.builtin import BuiltinPolicyModel
from policy.conditioning import DROPPED, NEGATIVE, POSITIVE
from policy.deploy import Policy


class CountingModel(BuiltinPolicyModel):
    """Records every indicator it is asked for and returns chunk k filled with the value k."""

    def __init__(self, config):
        super().__init__(config)
        self.calls: list[list[int]] = []

    def predict_chunk(self, inputs, cfg_beta=1.0, generator=None):
        self.calls.append(inputs.indicator.tolist())
        c = self.config
        return torch.full((inputs.state.shape[0], c.chunk_size, c.action_dim), float(len(self.calls)))


def test_open_loop_chunks_predict_every_execute_steps_and_unnormalise():
    config = tiny_config(chunk_size=4, execute_steps=3)
    model = CountingModel(config)
    policy = Policy(model, unit_normalizer(config))
    policy.reset(0)
    observation = fake_observation(config)
    actions = [policy.act(observation) for _ in range(7)]
    assert len(model.calls) == 3
    # chunk k holds normalised value k; the normalizer maps it to 2 k + 0.5.
    assert [a[0] for a in actions] == [2.5, 2.5, 2.5, 4.5, 4.5, 4.5, 6.5]
    assert actions[0].dtype == np.float32 and actions[0].shape == (config.action_dim,)
    assert all(call == [POSITIVE] for call in model.calls)


def test_temporal_ensemble_averages_overlapping_chunks_oldest_first():
    config = tiny_config(chunk_size=3, temporal_ensemble=0.5)
    model = CountingModel(config)
    policy = Policy(model, unit_normalizer(config))
    policy.reset(0)
    observation = fake_observation(config)
    actions = [policy.act(observation)[0] for _ in range(4)]
    assert len(model.calls) == 4
    weights = np.exp(-0.5 * np.arange(3))

    def unnormalised(values):
        return float(
            (weights[: len(values)] * (2 * np.asarray(values) + 0.5)).sum() / weights[: len(values)].sum()
        )

    expected = [unnormalised([1]), unnormalised([1, 2]), unnormalised([1, 2, 3]), unnormalised([2, 3, 4])]
    np.testing.assert_allclose(actions, expected, rtol=1e-5)


def test_deployment_indicator_follows_config():
    observation = None
    for overrides, token in (
        ({"deploy_indicator": "negative"}, NEGATIVE),
        ({"advantage_conditioned": False}, DROPPED),
        ({}, POSITIVE),
    ):
        config = tiny_config(**overrides)
        observation = observation or fake_observation(config)
        model = CountingModel(config)
        policy = Policy(model, unit_normalizer(config))
        policy.reset(1)
        policy.act(observation)
        assert model.calls == [[token]]


def test_a_real_model_acts_deterministically_per_seed():
    torch.manual_seed(0)
    config = tiny_config(cfg_beta=1.5)
    policy = Policy(BuiltinPolicyModel(config), unit_normalizer(config))
    observation = fake_observation(config)
    runs = []
    for _ in range(2):
        policy.reset(seed=5)
        runs.append(np.stack([policy.act(observation) for _ in range(3)]))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert np.isfinite(runs[0]).all()
    assert hasattr(policy, "reset") and hasattr(policy, "act")


def test_relative_action_dims_get_the_observed_state_added_back():
    config = tiny_config(chunk_size=2, execute_steps=2, relative_action_dims=[0, 2])
    model = CountingModel(config)
    policy = Policy(model, unit_normalizer(config))
    policy.reset(0)
    observation = fake_observation(config)
    action = policy.act(observation)
    # chunk 1 holds normalised 1.0 -> 2.5 in robot units; dims 0 and 2 are offsets from the observed state.
    expected = np.full(config.action_dim, 2.5, dtype=np.float32)
    expected[[0, 2]] += observation.state[[0, 2]]
    np.testing.assert_allclose(action, expected, rtol=1e-6)
