from __future__ import annotations

import numpy as np
import pytest
import torch
from episode_data import SCHEMA, expected_episode, write_episode

from replay import EpisodeFilter, FrameIndex, FrameSampler, Outcome
from replay.dataset import FrameWindowDataset, make_loader


@pytest.fixture
def two_episodes(store):
    ids = [write_episode(store, 0, 30, round=1, task="fold"), write_episode(store, 1, 9, round=1, task="box")]
    for episode_id, n in zip(ids, (30, 9), strict=True):
        store.write_derived("value", "v1", episode_id, -np.arange(n, 0, -1) / n)
        store.write_derived("advantage", "lab1", episode_id, np.arange(n) * 0.5)
        store.write_derived("indicator", "lab1", episode_id, np.arange(n) % 2 == 0)
    return store, ids


def test_windows_hold_state_at_t_and_t_plus_k_and_targets(two_episodes):
    store, (long_id, short_id) = two_episodes
    dataset = FrameWindowDataset(
        store, horizon=5, action_horizon=3, value_key="v1", advantage_key="lab1", indicator_key="lab1"
    )
    keys = [(long_id, 2), (short_id, 7), (long_id, 28), (short_id, 0)]
    batch = dataset.__getitems__(keys)
    want = {long_id: expected_episode(0, 30), short_id: expected_episode(1, 9)}
    lengths = {long_id: 30, short_id: 9}
    for row, (episode_id, t) in enumerate(keys):
        w, n = want[episode_id], lengths[episode_id]
        for cam in SCHEMA.camera_names:
            np.testing.assert_array_equal(batch[f"images.{cam}"][row].numpy(), w[f"images/{cam}"][t])
        np.testing.assert_array_equal(batch["state"][row].numpy(), w["state"][t])
        np.testing.assert_array_equal(batch["future_state"][row].numpy(), w["state"][min(t + 5, n - 1)])
        assert bool(batch["future_valid"][row]) == (t + 5 < n)
        for h in range(3):
            np.testing.assert_array_equal(batch["action"][row, h].numpy(), w["action"][min(t + h, n - 1)])
            assert bool(batch["action_valid"][row, h]) == (t + h < n)
        assert batch["step"][row] == t and batch["episode_length"][row] == n and batch["round"][row] == 1
        assert batch["value"][row] == pytest.approx(-(n - t) / n)
        assert batch["advantage"][row] == pytest.approx(t * 0.5)
        assert bool(batch["indicator"][row]) == (t % 2 == 0)
        assert batch["outcome"][row] == 1 and batch["episode_id"][row] == episode_id
        assert batch["progress"][row] == pytest.approx(w["progress"][t])
    assert batch["task"] == ["fold", "box", "fold", "box"]
    assert batch["images.front"].dtype == torch.uint8 and batch["state"].dtype == torch.float32
    single = dataset[(short_id, 3)]
    assert single["state"].shape == (3,) and single["task"] == "box"
    with pytest.raises(IndexError, match="9 steps"):
        dataset[(short_id, 9)]


def test_missing_derived_column_is_nan_and_can_be_filtered_out(two_episodes):
    store, ids = two_episodes
    unlabelled = write_episode(store, 2, 6, outcome=Outcome.UNLABELLED)
    dataset = FrameWindowDataset(store, value_key="v1")
    assert torch.isnan(dataset[(unlabelled, 0)]["value"])
    index = FrameIndex(store, EpisodeFilter(require_derived=(("value", "v1"),)))
    index.refresh()
    assert set(index.episode_ids) == set(ids)


def test_dataloader_with_two_workers_matches_main_process(two_episodes):
    store, _ = two_episodes
    dataset = FrameWindowDataset(store, horizon=4, value_key="v1")

    def epoch(num_workers: int) -> list[dict]:
        sampler = FrameSampler(FrameIndex(store), seed=5)
        loader = make_loader(dataset, sampler, batch_size=8, num_workers=num_workers)
        return list(loader)

    inline, workers = epoch(0), epoch(2)
    assert len(inline) == len(workers) == 5  # 39 frames in batches of 8
    for a, b in zip(inline, workers, strict=True):
        assert a["episode_id"] == b["episode_id"]
        for key in ("images.front", "images.wrist", "state", "future_state", "value", "step"):
            torch.testing.assert_close(a[key], b[key], equal_nan=True)
    assert sum(len(b["step"]) for b in workers) == 39


def test_persistent_workers_see_episodes_committed_later(two_episodes):
    store, _ = two_episodes
    sampler = FrameSampler(FrameIndex(store, EpisodeFilter(tasks=("late",))), seed=0)
    loader = make_loader(FrameWindowDataset(store), sampler, batch_size=4, num_workers=2)
    assert list(loader) == []
    new = write_episode(store, 3, 6, task="late")
    seen = [e for batch in loader for e in batch["episode_id"]]
    assert seen.count(new) == 6


def test_normalization_stats_per_task(two_episodes):
    store, _ = two_episodes
    stats = FrameWindowDataset(store).normalization_stats()
    assert set(stats) == {"fold", "box"}
    np.testing.assert_allclose(
        stats["box"]["action"]["mean"].numpy(), expected_episode(1, 9)["action"].mean(0), rtol=1e-5
    )
    assert stats["fold"]["state"]["std"].shape == (3,)


def test_bad_arguments(store):
    with pytest.raises(KeyError, match="no camera"):
        FrameWindowDataset(store, cameras=("side",))
    with pytest.raises(ValueError, match="horizon"):
        FrameWindowDataset(store, horizon=-1)


def test_background_batches_keep_order_and_stop_an_endless_producer():
    import itertools

    from replay.dataset import BackgroundBatches

    produced = []

    def endless():
        for i in itertools.count():
            produced.append(i)
            yield i

    with BackgroundBatches(endless(), depth=2) as batches:
        assert [next(batches) for _ in range(5)] == [0, 1, 2, 3, 4]
    assert not batches._thread.is_alive(), "closing stops the producer thread"
    # The producer never ran more than the queue's depth (+ the item it was putting) ahead of the consumer.
    assert len(produced) <= 5 + 2 + 1
    assert list(BackgroundBatches(range(3))) == [0, 1, 2]


def test_background_batches_raise_the_producers_error_in_the_consumer():
    from replay.dataset import BackgroundBatches

    def failing():
        yield 1
        raise ValueError("chunk 3 of episode e is corrupt")

    batches = BackgroundBatches(failing())
    assert next(batches) == 1
    with pytest.raises(ValueError, match="chunk 3 of episode e"):
        next(batches)
    with pytest.raises(StopIteration):
        next(batches)
