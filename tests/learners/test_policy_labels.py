"""A labelling run over a replay store: ground-truth values, per-group fractions, interventions, columns."""

from __future__ import annotations

import numpy as np
import pytest

from learners.policy_labels import LabellingConfig, label_store, neighbour_values
from replay import CameraSchema, Outcome, ReplayStore, StoreSchema

SCHEMA = StoreSchema(
    cameras=(CameraSchema("front", 8, 8),), state_names=("x",), action_names=("a",), control_hz=10.0
)


def write(
    store: ReplayStore, progress: np.ndarray, outcome: Outcome, round_index: int, interventions=None
) -> str:
    with store.episode_writer(robot_id="r", round=round_index, policy_version="p", task="box") as writer:
        for t, p in enumerate(progress):
            writer.add_step(
                {"front": np.zeros((8, 8, 3), np.uint8)},
                np.zeros(1, np.float32),
                np.zeros(1, np.float32),
                float(t),
                intervention=bool(interventions is not None and interventions[t]),
                progress=float(p),
            )
        writer.commit(outcome, labelled_by="test")
    return writer.episode_id


def test_neighbour_values_leave_the_frames_own_episode_out():
    # Two episodes in identical states: each frame's value must come from the other episode only.
    progress = [np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.5, 1.0])]
    states = [np.zeros((3, 2)), np.zeros((3, 2))]
    targets = [np.array([-0.3, -0.2, -0.1]), np.array([-0.9, -0.8, -0.7])]
    values = neighbour_values(progress, states, targets, neighbours=1)
    np.testing.assert_allclose(values[0], targets[1], atol=1e-6)
    np.testing.assert_allclose(values[1], targets[0], atol=1e-6)


def test_neighbour_values_tell_apart_frames_of_a_flat_progress_stretch_by_proprioception():
    # Progress stays at 0.25 while the arm travels; the value should follow the arm, not one number per progress.
    travel = np.linspace(0.0, 1.0, 11)[:, None]
    progress = [np.full(11, 0.25)] * 3
    states = [travel, travel + 0.01, travel - 0.01]
    targets = [np.linspace(-0.5, -0.4, 11)] * 3
    values = neighbour_values(progress, states, targets, neighbours=2)
    for v in values:
        assert np.all(np.diff(v) > 0)
        np.testing.assert_allclose(v, targets[0], atol=0.011)


def test_neighbour_values_refuse_missing_progress_and_a_lone_episode():
    with pytest.raises(ValueError, match="recorded progress"):
        neighbour_values(
            [np.array([np.nan])] * 2, [np.zeros((1, 1))] * 2, [np.array([0.0])] * 2, neighbours=1
        )
    with pytest.raises(ValueError, match="at least two"):
        neighbour_values([np.array([0.0])], [np.zeros((1, 1))], [np.array([0.0])], neighbours=1)


def test_label_store_fractions_interventions_and_hesitation(tmp_path):
    store = ReplayStore.create(str(tmp_path / "s"), SCHEMA)
    steady = np.linspace(0.0, 1.0, 40)
    hesitant = np.concatenate([np.linspace(0.0, 0.5, 20), np.full(20, 0.5), np.linspace(0.5, 1.0, 20)])
    demo_ids = [write(store, steady, Outcome.SUCCESS, 0), write(store, hesitant, Outcome.SUCCESS, 0)]
    corrections = np.zeros(40, bool)
    corrections[30:] = True
    rollout_ids = [
        write(store, np.linspace(0.0, 0.4, 40), Outcome.FAILURE, 1, corrections),
        write(store, steady, Outcome.SUCCESS, 1),
    ]
    report = label_store(store, LabellingConfig(run="lab", horizon=5, neighbours=4))
    assert report.episodes == 4 and report.frames == 180
    indicators = {i: store.read_derived("indicator", "lab", i) for i in demo_ids + rollout_ids}
    advantages = {i: store.read_derived("advantage", "lab", i) for i in demo_ids + rollout_ids}
    demo = np.concatenate([indicators[i] for i in demo_ids])
    assert demo.sum() == round(0.3 * 100)
    autonomous = np.concatenate([indicators[rollout_ids[0]][:30], indicators[rollout_ids[1]]])
    assert autonomous.sum() == round(0.4 * 70)
    assert indicators[rollout_ids[0]][30:].all(), "interventions are always positive"
    # Pausing loses value compared with moving on at the usual pace.
    assert advantages[demo_ids[1]][22:35].max() < np.median(advantages[demo_ids[0]])
    assert store.derived_episode_ids("indicator", "lab") == set(demo_ids + rollout_ids)


def test_label_store_reads_a_value_column_in_model_range(tmp_path):
    store = ReplayStore.create(str(tmp_path / "s"), SCHEMA)
    episode = write(store, np.linspace(0.0, 1.0, 10), Outcome.SUCCESS, 0)
    # Values that are exactly the return-to-go (model range y = 2 V + 1) give zero advantage everywhere.
    exact = 2.0 * (-(np.arange(9, -1, -1)) / 20.0) + 1.0
    store.write_derived("value", "vm1", episode, exact)
    label_store(store, LabellingConfig(run="lab", value_key="vm1", horizon=3))
    np.testing.assert_allclose(store.read_derived("advantage", "lab", episode), 0.0, atol=1e-6)
    with pytest.raises(KeyError, match="no value column"):
        label_store(store, LabellingConfig(run="lab2", value_key="missing"))


def test_label_store_takes_the_time_limit_as_l_max_and_never_less_than_an_episode(tmp_path):
    store = ReplayStore.create(str(tmp_path / "s"), SCHEMA)
    episode = write(store, np.linspace(0.0, 1.0, 10), Outcome.SUCCESS, 0)
    # Exact values on the scale of a 40-step time limit (L_max + C_fail = 80): zero advantage only when the
    # labelling uses the same L_max, not the longest episode's 10.
    exact = 2.0 * (-(np.arange(9, -1, -1)) / 80.0) + 1.0
    store.write_derived("value", "vm1", episode, exact)
    label_store(
        store, LabellingConfig(run="limit", value_key="vm1", horizon=3, max_episode_length={"box": 40})
    )
    np.testing.assert_allclose(store.read_derived("advantage", "limit", episode), 0.0, atol=1e-6)
    label_store(store, LabellingConfig(run="longest", value_key="vm1", horizon=3))
    assert np.abs(store.read_derived("advantage", "longest", episode)[:-3]).min() > 1e-3
    # A limit below the longest episode is raised to it instead of failing.
    label_store(
        store, LabellingConfig(run="short", value_key="vm1", horizon=3, max_episode_length={"box": 5})
    )


def test_unlabelled_episodes_are_left_out_with_a_count_and_none_labelled_names_the_console(tmp_path):
    store = ReplayStore.create(str(tmp_path / "replay"), SCHEMA)
    for _ in range(2):
        write(store, np.linspace(0, 1, 6), Outcome.UNLABELLED, 0)
    with pytest.raises(
        ValueError, match="all 2 are unlabelled. Give their outcomes on the arms' operator consoles"
    ):
        label_store(store, LabellingConfig(run="r0", outcome_only=True))
    labelled = write(store, np.linspace(0, 1, 6), Outcome.SUCCESS, 0)
    report = label_store(store, LabellingConfig(run="r1", outcome_only=True))
    assert (report.episodes, report.unlabelled) == (1, 2)
    assert store.derived_episode_ids("indicator", "r1") == {labelled}
