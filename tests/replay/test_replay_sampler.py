from __future__ import annotations

import numpy as np
import pytest
from episode_data import add_steps, expected_episode, write_episode

from replay import EpisodeFilter, FrameIndex, FrameSampler, Outcome


@pytest.fixture
def mixed(store):
    """Six episodes over two rounds, three outcomes, two tasks; ids by name."""
    ids = {
        "r0_ok": write_episode(store, 0, 10, round=0, task="fold", outcome=Outcome.SUCCESS),
        "r0_fail": write_episode(store, 1, 11, round=0, task="fold", outcome=Outcome.FAILURE),
        "r1_ok_box": write_episode(store, 2, 12, round=1, task="box", outcome=Outcome.SUCCESS),
        "r1_unl": write_episode(store, 3, 13, round=1, task="fold", outcome=Outcome.UNLABELLED),
        "r1_help": write_episode(store, 4, 14, round=1, task="fold", intervention_every=3),
        "r2_ok": write_episode(store, 5, 15, round=2, task="box", robot_id="arm1"),
    }
    return store, ids


def _episodes(index: FrameIndex) -> set[str]:
    return {index.episode_ids[e] for e in np.unique(index.episode_of)}


def test_filters_select_episodes_and_steps(mixed):
    store, ids = mixed
    index = FrameIndex(store)
    assert index.refresh() == sum(range(10, 16))
    cases = {
        EpisodeFilter(rounds=(1,)): {"r1_ok_box", "r1_unl", "r1_help"},
        EpisodeFilter(outcomes=(Outcome.FAILURE, "unlabelled")): {"r0_fail", "r1_unl"},
        EpisodeFilter(tasks=("box",)): {"r1_ok_box", "r2_ok"},
        EpisodeFilter(robots=("arm1",)): {"r2_ok"},
        EpisodeFilter(rounds=(0, 1), outcomes=(Outcome.SUCCESS,), tasks=("fold",)): {"r0_ok", "r1_help"},
        EpisodeFilter(intervention="only"): {"r1_help"},
    }
    for episode_filter, names in cases.items():
        index = FrameIndex(store, episode_filter)
        index.refresh()
        assert _episodes(index) == {ids[n] for n in names}, episode_filter
    only = FrameIndex(store, EpisodeFilter(intervention="only"))
    assert only.refresh() == 5 and list(only.step_of) == [0, 3, 6, 9, 12]
    excluded = FrameIndex(store, EpisodeFilter(intervention="exclude", rounds=(1,)))
    assert excluded.refresh() == 12 + 13 + 9
    assert not {
        (e, s) for e, s in excluded.keys(np.arange(len(excluded))) if e == ids["r1_help"] and s % 3 == 0
    }


def test_require_derived_and_relabel_are_seen_on_refresh(mixed):
    store, ids = mixed
    store.write_derived("indicator", "run1", ids["r0_ok"], np.ones(10, bool))
    index = FrameIndex(store, EpisodeFilter(require_derived=(("indicator", "run1"),)))
    assert index.refresh() == 10
    labelled = FrameIndex(store, EpisodeFilter(outcomes=(Outcome.SUCCESS,)))
    labelled.refresh()
    assert ids["r1_unl"] not in labelled.episode_ids
    store.set_outcome(ids["r1_unl"], Outcome.SUCCESS, "operator")
    labelled.refresh()
    assert ids["r1_unl"] in labelled.episode_ids


def test_sampler_yields_keys_only_and_refreshes_between_epochs(mixed):
    store, ids = mixed
    sampler = FrameSampler(FrameIndex(store, EpisodeFilter(rounds=(0,))), seed=3)
    first = list(sampler)
    assert len(first) == 21 and len(set(first)) == 21
    assert all(isinstance(e, str) and isinstance(s, int) for e, s in first)
    assert {e for e, _ in first} == {ids["r0_ok"], ids["r0_fail"]}
    new = write_episode(store, 9, 7, round=0)
    second = list(sampler)
    assert len(second) == 28 and new in {e for e, _ in second}
    assert sampler.epoch == 1 and first != second[: len(first)]


def test_sampler_state_dict_resumes_mid_epoch(mixed):
    store, _ = mixed
    sampler = FrameSampler(FrameIndex(store), seed=11, samples_per_epoch=40)
    iterator = iter(sampler)
    head = [next(iterator) for _ in range(15)]
    state = sampler.state_dict()
    rest = list(iterator)
    write_episode(store, 20, 30)  # committed after the checkpoint: must not change the resumed epoch
    resumed = FrameSampler(FrameIndex(store), seed=0)
    resumed.load_state_dict(state)
    assert list(resumed) == rest and len(head) + len(rest) == 40
    assert resumed.state_dict()["epoch"] == state["epoch"]
    next_epoch = list(resumed)
    # The next epoch refreshes the index (now with the new episode) and keeps samples_per_epoch.
    assert resumed.epoch == state["epoch"] + 1 and len(next_epoch) == 40 and len(resumed.index) == 75 + 30


def test_index_and_filter_state_round_trip(mixed):
    store, _ = mixed
    index = FrameIndex(
        store, EpisodeFilter(rounds=(1, 2), outcomes=(Outcome.SUCCESS,), intervention="exclude")
    )
    index.refresh()
    clone = FrameIndex(store)
    clone.load_state_dict(index.state_dict())
    assert clone.filter == index.filter and clone.episode_ids == index.episode_ids
    np.testing.assert_array_equal(clone.step_of, index.step_of)
    assert EpisodeFilter.from_dict(index.filter.to_dict()) == index.filter
    with pytest.raises(ValueError, match="intervention"):
        EpisodeFilter(intervention="sometimes")


def test_unshuffled_sampler_walks_index_in_order(mixed):
    store, _ = mixed
    index = FrameIndex(store, EpisodeFilter(rounds=(0,)))
    keys = list(FrameSampler(index, shuffle=False))
    assert keys == index.keys(np.arange(len(index)))


def test_purpose_and_tags_are_recorded_and_filtered(store):
    demo = write_episode(store, 0, 8, purpose="demo")
    rollout = write_episode(store, 1, 9)
    evaluation = write_episode(store, 2, 10, purpose="eval")
    assert store.record(demo).meta.purpose == "demo"
    assert store.record(rollout).meta.purpose == "rollout"
    index = FrameIndex(store, EpisodeFilter(purposes=("demo", "eval")))
    index.refresh()
    assert _episodes(index) == {demo, evaluation}
    assert EpisodeFilter.from_dict(EpisodeFilter(purposes=("eval",)).to_dict()).purposes == ("eval",)
    with pytest.raises(ValueError, match="purpose must be one of"):
        write_episode(store, 3, 5, purpose="warmup")


def test_tags_given_at_commit_survive_a_reload(store):
    with store.episode_writer(robot_id="arm0", round=0, policy_version="p0", task="t") as writer:
        add_steps(writer, expected_episode(0, 6), 0, 6)
        writer.commit(Outcome.SUCCESS, labelled_by="sim", tags=("retry", "hesitation"))
    assert store.record(writer.episode_id, reload=True).meta.tags == ("retry", "hesitation")
