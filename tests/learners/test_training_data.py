"""Evaluation episodes are never value or policy training data, and the value model's held-out split stays out
of its training; the quality floor sees scale, not only order."""

from __future__ import annotations

import numpy as np
import pytest

from learners.policy_labels import LabellingConfig, label_store
from learners.policy_learner import PolicyLearnerConfig, episode_filter_for
from learners.value_data import write_synthetic_episode, write_synthetic_store
from learners.value_learner import ValueLearner, ValueLearnerConfig, labelled_filter
from learners.value_quality import ValueFloorConfig, assess_values, held_out_episodes
from replay import TRAINING_PURPOSES, EpisodeFilter, FrameIndex, Outcome, is_held_out
from valuemodel.checkpoint import load_norm_stats, version_dir
from valuemodel.config import ValueModelConfig
from valuemodel.synthetic import make_episode
from valuemodel.targets import episode_value_targets

HOLDOUT = 0.3


@pytest.fixture
def store(tmp_path):
    store, _ = write_synthetic_store(str(tmp_path / "store"), ["expert", "failure"] * 4)
    rng = np.random.default_rng(1)
    for kind in ("expert", "failure", "expert", "expert"):
        episode = make_episode(rng, kind, image_size=32, length_range=(30, 40))
        write_synthetic_episode(store, episode, task="synthetic", purpose="eval")
    return store


def ids(store, episode_filter) -> set[str]:
    index = FrameIndex(store, episode_filter)
    index.refresh()
    return set(index.records)


def purposes(store, episode_ids) -> set[str]:
    return {store.record(e).meta.purpose for e in episode_ids}


def test_the_value_learner_trains_on_neither_evaluation_nor_held_out_episodes(store, tmp_path):
    training = ids(store, labelled_filter(HOLDOUT))
    assert purposes(store, training) == {"rollout"}
    assert not any(is_held_out(e, HOLDOUT) for e in training)
    held_out = {r.meta.episode_id for r in held_out_episodes(store, HOLDOUT)}
    assert held_out.isdisjoint(training) and "eval" in purposes(store, held_out)
    assert training | held_out == set(store.episode_ids())

    config = ValueLearnerConfig(
        store_url=store.location.url, checkpoint_root=str(tmp_path / "ckpt"), steps=2, batch_size=4,
        warmup_steps=1, checkpoint_every=0, task_names=["synthetic"], log_every=0, device="cpu",
        holdout_fraction=HOLDOUT,
    )  # fmt: skip
    model = ValueModelConfig.preset(
        "tiny", "static", image_height=32, image_width=32, tasks=["synthetic task"]
    )
    learner = ValueLearner(config, model)
    version = learner.refit(0)
    provenance = load_norm_stats(version_dir(config.checkpoint_root, version))["provenance"]
    assert provenance["episodes"] == len(training)


@pytest.mark.parametrize("extraction", ["recap", "bc", "filtered_bc", "awr"])
def test_the_policy_learner_never_reads_evaluation_episodes(store, extraction):
    config = PolicyLearnerConfig(
        store_url=store.location.url, checkpoint_dir="unused", extraction=extraction, labelling_run="run0"
    )
    episode_filter = episode_filter_for(config, round_index=0)
    assert episode_filter.purposes == TRAINING_PURPOSES
    unrequired = EpisodeFilter(**{**episode_filter.__dict__, "require_derived": ()})
    assert purposes(store, ids(store, unrequired)) == {"rollout"}


def test_advantage_labels_are_written_for_training_episodes_only(store):
    label_store(store, LabellingConfig(run="run0"), EpisodeFilter(purposes=TRAINING_PURPOSES))
    labelled = store.derived_episode_ids("indicator", "run0")
    assert purposes(store, labelled) == {"rollout"} and len(labelled) == 8


def test_outcome_labels_mark_successes_and_corrections_positive(store):
    report = label_store(
        store, LabellingConfig(run="outcome", outcome_only=True), EpisodeFilter(purposes=("rollout",))
    )
    for episode_id in store.derived_episode_ids("indicator", "outcome"):
        success = store.record(episode_id).meta.outcome is Outcome.SUCCESS
        assert store.read_derived("indicator", "outcome", episode_id).all() == success
    assert report.positive_fraction == pytest.approx(0.5, abs=0.15)


def write_values(store, key: str, transform) -> list:
    records = held_out_episodes(store, HOLDOUT)
    for record in records:
        meta = record.meta
        target = episode_value_targets(meta.length, meta.outcome is Outcome.SUCCESS, 40)
        store.write_derived("value", key, meta.episode_id, transform(target))
    return records


@pytest.mark.parametrize(
    "name, transform, passes",
    [
        ("the target itself", lambda t: t, True),
        ("the target, noisy", lambda t: t + np.random.default_rng(0).normal(0, 0.1, len(t)), True),
        ("a flat line", lambda t: np.full_like(t, 0.56), False),
        # In order (VOC and Pearson near 1) but a twentieth of the target's scale: what ViVa drew in the newcomer run.
        ("the right order at the wrong scale", lambda t: 0.5 + 0.05 * t, False),
    ],
)
def test_the_quality_floor_sees_scale_as_well_as_order(store, name, transform, passes):
    key = name.replace(" ", "-").replace(",", "")
    records = write_values(store, key, transform)
    quality = assess_values(store, key, records, {"synthetic": 40}, None, ValueFloorConfig())
    assert quality.passed is passes, quality
    assert quality.episodes == len(records) >= 3


def test_too_few_held_out_successes_fail_the_floor(store):
    records = write_values(store, "v", lambda t: t)
    successes = [r for r in records if r.meta.outcome is Outcome.SUCCESS][:2]
    failures = [r for r in records if r.meta.outcome is not Outcome.SUCCESS]
    quality = assess_values(store, "v", successes + failures, {"synthetic": 40}, None, ValueFloorConfig())
    assert not quality.passed and "only 2 held-out successes" in quality.reason


def test_the_floor_passes_a_value_that_reads_a_failure_as_going_nowhere(store):
    """A failure's target climbs with the clock while the arm goes nowhere; a value that predicts it flat and low
    is right, and must not fail the floor (judged on every episode, it did). On a success a calibrated value starts
    below the success target, because early on the outcome is still open."""
    rng = np.random.default_rng(2)
    for _ in range(3):  # rollouts of a round that mostly fails
        episode = make_episode(rng, "failure", image_size=32, length_range=(38, 40))
        write_synthetic_episode(store, episode, task="synthetic", purpose="eval")
    records = held_out_episodes(store, HOLDOUT)
    for record in records:
        meta = record.meta
        success = meta.outcome is Outcome.SUCCESS
        target = episode_value_targets(meta.length, success, 40)
        open_outcome = np.linspace(0.5, 1.0, len(target))  # P(success) as the episode unfolds
        calibrated = open_outcome * target + (1 - open_outcome) * -0.8
        store.write_derived(
            "value", "stuck", meta.episode_id, calibrated if success else np.full_like(target, -0.8)
        )
    assert any(r.meta.outcome is not Outcome.SUCCESS for r in records)
    quality = assess_values(store, "stuck", records, {"synthetic": 40}, None, ValueFloorConfig())
    assert quality.passed, quality
    assert quality.successes < quality.episodes
