import numpy as np
import pytest

from valuemodel.targets import (
    UnlabelledEpisodeError,
    episode_value_targets,
    from_model_range,
    labelled_episodes,
    max_length_per_task,
    normalised_returns,
    progress_targets,
    to_model_range,
)


def test_success_counts_steps_to_go():
    v = normalised_returns(4, success=True, max_episode_length=10, failure_penalty=10)
    assert v.tolist() == pytest.approx([-3 / 20, -2 / 20, -1 / 20, 0.0])
    y = episode_value_targets(4, True, 10, 10)
    assert y[-1] == pytest.approx(1.0) and np.all(np.diff(y) > 0)


def test_failure_adds_the_penalty():
    v = normalised_returns(3, success=False, max_episode_length=10, failure_penalty=5)
    assert v.tolist() == pytest.approx([-7 / 15, -6 / 15, -5 / 15])


def test_default_penalty_and_range():
    longest_fail = normalised_returns(10, success=False, max_episode_length=10)
    assert longest_fail[0] == pytest.approx(-19 / 20) and longest_fail.min() > -1
    success = episode_value_targets(10, True, 10)
    failure = episode_value_targets(10, False, 10)
    assert np.all(failure < success)  # higher is better: a failure is always worse at the same step
    assert np.all((failure > -1) & (success <= 1))


def test_unlabelled_episodes_are_rejected_and_filtered():
    with pytest.raises(UnlabelledEpisodeError, match="unlabelled"):
        episode_value_targets(5, None, 10)
    assert labelled_episodes([True, None, False, None]).tolist() == [0, 2]


def test_bad_lengths():
    with pytest.raises(ValueError, match="max_episode_length"):
        normalised_returns(11, True, 10)
    with pytest.raises(ValueError, match="at least one step"):
        normalised_returns(0, True, 10)


def test_model_range_maps_are_inverse():
    v = np.array([-0.9, -0.5, 0.0], dtype=np.float32)
    assert to_model_range(v).tolist() == pytest.approx([-0.8, 0.0, 1.0])
    assert from_model_range(to_model_range(v)) == pytest.approx(v)


def test_helpers():
    assert max_length_per_task([0, 1, 0], [5, 7, 9]) == {0: 9, 1: 7}
    assert progress_targets(5).tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
