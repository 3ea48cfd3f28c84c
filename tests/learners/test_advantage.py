"""RECAP advantages, indicator thresholds and the WVM extraction selectors, against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from learners.advantage import (
    awr_weights,
    binarize_advantages,
    filter_nonnegative,
    filter_top_fraction,
    nstep_advantages,
    recap_advantages,
    standardize_per_group,
    step_rewards,
    top_fraction_mask,
    wvm_delta,
)
from valuemodel.targets import UnlabelledEpisodeError, normalised_returns


def test_rewards_sum_to_the_value_targets_of_valuemodel():
    for success in (True, False):
        rewards = step_rewards(7, success, max_episode_length=10)
        return_to_go = np.cumsum(rewards[::-1])[::-1]
        np.testing.assert_allclose(return_to_go, normalised_returns(7, success, 10), atol=1e-6)
    # Z = L_max + C_fail = 20: -1/20 per step, 0 at the end of a success, -C_fail/Z = -0.5 at a failure's end.
    np.testing.assert_allclose(step_rewards(3, True, 10), [-0.05, -0.05, 0.0])
    np.testing.assert_allclose(step_rewards(3, False, 10), [-0.05, -0.05, -0.5])


def test_nstep_advantage_hand_computed_with_episode_end():
    values = np.array([-0.3, -0.2, -0.25, -0.1, 0.0])
    advantages = recap_advantages(values, success=True, max_episode_length=10, horizon=2)
    # A0 = r0 + r1 + V2 - V0; A2 bootstraps on V4 (t+N = 4 < T = 5); A3 and A4 reach the end: bootstrap 0.
    expected = [-0.1 - 0.25 + 0.3, -0.1 - 0.1 + 0.2, -0.1 + 0.0 + 0.25, -0.05 + 0.0 + 0.1, 0.0 - 0.0]
    np.testing.assert_allclose(advantages, expected, atol=1e-6)


def test_failure_penalty_enters_advantages_near_the_end():
    values = np.full(3, -0.5)
    advantages = recap_advantages(values, success=False, max_episode_length=10, horizon=50)
    # N beyond the end: Monte-Carlo return-to-go (-0.6, -0.55, -0.5) minus V = -0.5.
    np.testing.assert_allclose(advantages, [-0.1, -0.05, 0.0], atol=1e-6)
    success = recap_advantages(values, success=True, max_episode_length=10, horizon=50)
    np.testing.assert_allclose(success - advantages, [0.5, 0.5, 0.5], atol=1e-6)


def test_a_time_out_bootstraps_on_its_last_frame_so_a_stall_never_looks_better_near_the_limit():
    # An arm standing still until the time limit: one observation, so one value for every frame.
    values = np.full(10, -0.7)
    terminal = recap_advantages(values, success=False, max_episode_length=10, horizon=3)
    # Scored as terminal, the last frames escape the -1 steps they would have paid: they rise towards the end.
    assert terminal[-1] > terminal[0]
    truncated = recap_advantages(values, success=False, max_episode_length=10, horizon=3, timed_out=True)
    # Hand computed with Z = 20: A_t = -(e - t) / 20 with e = min(t + 3, 9).
    expected = [-(min(t + 3, 9) - t) / 20 for t in range(10)]
    np.testing.assert_allclose(truncated, expected, atol=1e-6)
    assert truncated.max() <= 0.0
    with pytest.raises(ValueError, match="did not time out"):
        recap_advantages(values, success=True, max_episode_length=10, timed_out=True)


@pytest.mark.parametrize("success", [True, False])
def test_exact_return_to_go_values_give_zero_advantage(success):
    values = normalised_returns(40, success, max_episode_length=60)
    for horizon in (1, 7, 50):
        advantages = recap_advantages(values, success, max_episode_length=60, horizon=horizon)
        np.testing.assert_allclose(advantages, 0.0, atol=1e-6)


def test_unlabelled_episode_has_no_advantage():
    with pytest.raises(UnlabelledEpisodeError):
        recap_advantages(np.zeros(4), None, max_episode_length=10)
    with pytest.raises(ValueError, match="horizon"):
        nstep_advantages(np.zeros(4), np.zeros(4), horizon=0)


def test_threshold_gives_the_configured_positive_fraction_per_group():
    rng = np.random.default_rng(0)
    advantages = rng.normal(size=1000)
    groups = [("box", "demo")] * 600 + [("box", "round1")] * 400
    fractions = {("box", "demo"): 0.3, ("box", "round1"): 0.4}
    indicators, thresholds = binarize_advantages(advantages, groups, fractions)
    assert indicators[:600].sum() == 180 and indicators[600:].sum() == 160
    for sl, key in ((slice(0, 600), ("box", "demo")), (slice(600, 1000), ("box", "round1"))):
        part, labels = advantages[sl], indicators[sl]
        assert part[labels].min() > part[~labels].max()
        assert thresholds[key] == pytest.approx(part[labels].min())


def test_ties_at_the_threshold_still_give_the_exact_fraction():
    mask = top_fraction_mask(np.zeros(10), 0.3)
    assert mask.sum() == 3
    flat_then_rising = np.array([0.0] * 6 + [1.0, 2.0, 3.0, 4.0])
    assert top_fraction_mask(flat_then_rising, 0.5)[6:].all()


def test_interventions_are_forced_positive_and_do_not_count_towards_the_fraction():
    advantages = np.linspace(-1.0, 1.0, 20)
    interventions = np.zeros(20, bool)
    interventions[:5] = True  # the worst advantages, yet human corrections
    indicators, _ = binarize_advantages(advantages, ["t"] * 20, 0.4, interventions)
    assert indicators[:5].all()
    assert indicators[5:].sum() == 6 and indicators[14:].all()


def test_wvm_delta_and_filters():
    values = np.array([0.0, 0.1, 0.1, 0.05, 0.3])
    np.testing.assert_allclose(wvm_delta(values, horizon=2), [0.1, 0.0, -0.05, 0.25, 0.0], atol=1e-6)
    np.testing.assert_allclose(wvm_delta(values, horizon=1), 0.0)
    delta = np.array([-0.2, 0.0, 0.3, -0.1, 0.5])
    np.testing.assert_array_equal(filter_nonnegative(delta), [False, True, True, False, True])
    np.testing.assert_array_equal(filter_top_fraction(delta, 0.4), [False, False, True, False, True])


def test_awr_weights_are_exponential_and_capped():
    weights = awr_weights(np.array([-1.0, 0.0, 0.5, 10.0]), temperature=1.0, cap=2.0)
    np.testing.assert_allclose(weights, [np.exp(-1.0), 1.0, np.exp(0.5), 2.0], rtol=1e-6)
    scaled = standardize_per_group(np.array([1.0, -1.0, 10.0, -10.0]), ["a", "a", "b", "b"])
    np.testing.assert_allclose(scaled, [1.0, -1.0, 1.0, -1.0])
