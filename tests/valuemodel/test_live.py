"""Scoring one frame with a published checkpoint gives the value that labelling gives the same frame."""

from __future__ import annotations

import pytest

from learners.value_data import write_synthetic_store
from learners.value_learner import ValueLearner, ValueLearnerConfig
from valuemodel import ValueModelConfig
from valuemodel.checkpoint import version_dir
from valuemodel.live import FrameScorer


@pytest.mark.parametrize("kind", ["static", "viva"])
def test_a_frame_scores_as_labelling_scored_it(tmp_path, kind):
    store = write_synthetic_store(str(tmp_path / "store"), ("expert", "failure"))[0]
    config = ValueLearnerConfig(
        store_url=store.location.url, checkpoint_root=str(tmp_path / "ckpt"), steps=4, batch_size=4,
        warmup_steps=1, checkpoint_every=0, task_names=["synthetic"], log_every=0, device="cpu",
    )  # fmt: skip
    model = ValueModelConfig.preset(
        "tiny", kind, horizon=5, image_height=32, image_width=32, tasks=["synthetic task"]
    )
    learner = ValueLearner(config, model)
    version = learner.refit(0)
    learner.label(version)
    episode = store.episode_ids()[0]
    labelled = store.read_derived("value", learner.label_key(version), episode)
    data = store.read_episode(episode)
    scorer = FrameScorer(version_dir(config.checkpoint_root, version), task="synthetic")
    for step in (0, len(labelled) // 2):
        images = {c: data[f"images/{c}"][step] for c in scorer.config.cameras}
        assert scorer.score(images, data["state"][step]) == pytest.approx(float(labelled[step]), abs=1e-4)
    with pytest.raises(KeyError, match="lacks"):
        scorer.score({}, data["state"][0])
