"""Replay -> ValueBatch: normalisation, RECAP targets, WVM windows, the latent cache and chunk merging."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learners.value_data import (
    LatentCache,
    ValueBatchAdapter,
    WindowDataset,
    compute_value_stats,
    merge_window_values,
    window_offsets,
    write_synthetic_store,
)
from replay import FrameIndex
from replay.dataset import FrameWindowDataset
from valuemodel.norm_stats import denormalise_state, normalise_state
from valuemodel.synthetic import synthetic_config
from valuemodel.targets import episode_value_targets


@pytest.fixture
def store(tmp_path):
    return write_synthetic_store(str(tmp_path / "store"), ["expert", "failure", "retry"])[0]


def stats_of(store, config):
    index = FrameIndex(store)
    index.refresh()
    return compute_value_stats(
        list(index.records.values()), ["synthetic"], horizon=config.horizon, frame_stride=2
    )


def test_batches_carry_normalised_state_and_recap_targets(store):
    config = synthetic_config("tiny", "viva", horizon=5, image_height=32, image_width=32)
    stats = stats_of(store, config)
    lengths = [store.record(e).meta.length for e in store.episode_ids()]
    assert stats.max_episode_length == {"synthetic": max(lengths)}
    dataset = FrameWindowDataset(store, horizon=5)
    keys = [(e, s) for e in store.episode_ids() for s in (0, 7, store.record(e).meta.length - 1)]
    batch = ValueBatchAdapter(config, stats)(dataset.__getitems__(keys))
    assert batch.state.abs().max() <= 1.0 and batch.future_state.shape == batch.state.shape
    assert (
        batch.images["front"].shape == (len(keys), 3, 32, 32) and batch.images["front"].dtype == torch.uint8
    )
    for i, (episode_id, step) in enumerate(keys):
        meta = store.record(episode_id).meta
        expected = episode_value_targets(meta.length, meta.outcome == "success", max(lengths))[step]
        assert batch.value_target[i].item() == pytest.approx(float(expected))
    assert batch.value_target[2] == pytest.approx(1.0), "a success ends at the top of the value range"
    assert batch.value_target[5] == pytest.approx(0.0), "a failure ends C_fail = L_max steps below a success"


def test_state_normalisation_maps_the_task_range_onto_minus_one_one():
    from valuemodel.norm_stats import ValueDataStats

    stats = ValueDataStats(["t"], {"t": [0.0, -2.0]}, {"t": [1.0, 2.0]}, {"t": 10})
    state = torch.tensor([[0.0, -2.0], [1.0, 2.0], [0.5, 0.0], [3.0, 0.0]])
    assert normalise_state(state, ["t"] * 4, stats).tolist() == [[-1, -1], [1, 1], [0, 0], [1, 0]]
    # A predicted future state maps back to raw units (inside the range, where normalising did not clip).
    inside = state[:3]
    assert torch.allclose(
        denormalise_state(normalise_state(inside, ["t"] * 3, stats), ["t"] * 3, stats), inside
    )


def test_wvm_windows_and_latent_cache(store):
    config = synthetic_config("tiny", "wvm", horizon=5, image_height=32, image_width=32, chunk=2)
    stats = stats_of(store, config)
    offsets = window_offsets(config, 2)
    assert offsets.tolist() == [-4, -2, 0, 2, 4]
    encoded = []

    def encode(images):
        encoded.append(len(images["front"]))
        return {c: v.float()[:, :1, :4, :4] for c, v in images.items()}

    reader = FrameWindowDataset(store, horizon=0)
    adapter = ValueBatchAdapter(config, stats, encode=encode, cache=LatentCache(10_000), image_reader=reader)
    windows = WindowDataset(FrameWindowDataset(store, horizon=5, cameras=()), offsets)
    episode = store.episode_ids()[0]
    batch = adapter(windows.__getitems__([(episode, 0), (episode, 10)]))
    assert batch.video_latents["front"].shape == (2, 5, 1, 4, 4)
    assert batch.value_window.shape == (2, 5)
    assert batch.value_window[0, 0] == batch.value_window[0, 2], "indices before the start clamp to frame 0"
    assert batch.value_window[1].diff().gt(0).all(), "a success's targets rise along the window"
    adapter(windows.__getitems__([(episode, 0), (episode, 10)]))
    assert sum(encoded) == len({0, 2, 4, 6, 8, 10, 12, 14}), "each distinct frame is encoded once"


def test_overlapping_chunks_average_per_step():
    chunks = np.array([[1.0, 2.0], [3.0, 4.0]])
    merged = merge_window_values(chunks, np.array([1, 2]), np.array([-1, 0]), 3)
    assert merged.tolist() == [1.0, 2.5, 4.0]


def test_wvm_episode_inference_feeds_earlier_predictions_as_prefix(store):
    # The prefix values are WVM's strongest condition; episode inference used to give every window U(-1, 1) noise
    # instead (the model then copies noise), although earlier windows had already predicted those steps.
    from learners.value_data import frame_dataset, predict_episode_values
    from valuemodel.interface import ValuePrediction

    config = synthetic_config("tiny", "wvm", horizon=5, image_height=32, image_width=32, chunk=2)
    stride = 2
    stats = stats_of(store, config)

    class EchoWVM:
        """Predicts each step's own index for its chunk; records the prefixes it was given."""

        def __init__(self):
            self.config, self.device, self.prefixes = config, torch.device("cpu"), []

        def predict(self, batch):
            steps = batch.video_latents["front"][:, :, 0, 0, 0]
            self.prefixes.append((steps[:, :1], batch.value_window))
            return ValuePrediction(value=steps[:, -1], value_chunk=steps[:, 1:].clone())

    def step_latents(keys, batch, flatten):
        # Each frame's latent holds its own step index, so the echo model can read steps back.
        steps = torch.tensor([float(k[1]) for k in keys]).reshape(-1, 1, 1, 1)
        return {c: steps.expand(-1, 1, 4, 4) for c in config.cameras}, True

    adapter = ValueBatchAdapter(config, stats)
    adapter._frames = step_latents
    dataset = frame_dataset(store, config, stats, cached=True, training=False)
    episode = store.episode_ids()[0]
    length = store.record(episode).meta.length
    model = EchoWVM()
    values = predict_episode_values(model, adapter, dataset, episode, length, 64, stride)
    np.testing.assert_allclose(values, np.arange(length))
    given = [(steps, prefix) for steps, prefix in model.prefixes if prefix is not None]
    assert given, "windows after the first must get their prefix from earlier predictions"
    for steps, prefix in given:
        # The echo model's value of step s is s, so the prefix handed in must equal the prefix frame's step.
        torch.testing.assert_close(prefix[:, :1], steps)
