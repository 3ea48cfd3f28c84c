"""The value learner: refit versions, labelling, NaN handling, resume after kill -9, continual mode."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from learners.value_data import write_synthetic_episode, write_synthetic_store
from learners.value_learner import NonFiniteLossError, ValueLearner, ValueLearnerConfig
from replay import ReplayStore
from valuemodel.checkpoint import list_versions, load_norm_stats, version_dir
from valuemodel.config import ValueModelConfig
from valuemodel.factory import build_value_model
from valuemodel.synthetic import make_episode

REPO = Path(__file__).resolve().parents[2]
KINDS = ("expert", "retry", "hesitation", "failure")


def model_config(kind: str = "viva") -> ValueModelConfig:
    return ValueModelConfig.preset(
        "tiny", kind, horizon=5, image_height=32, image_width=32, tasks=["synthetic task"], chunk=2
    )


def learner_config(store: ReplayStore, root: Path, **overrides) -> ValueLearnerConfig:
    values = dict(
        store_url=store.location.url, checkpoint_root=str(root), steps=12, batch_size=8, warmup_steps=2,
        checkpoint_every=4, task_names=["synthetic"], log_every=0, wvm_frame_stride=2, device="cpu",
    )  # fmt: skip
    values.update(overrides)
    return ValueLearnerConfig(**values)


@pytest.fixture
def store(tmp_path) -> ReplayStore:
    return write_synthetic_store(str(tmp_path / "store"), KINDS)[0]


def add_episode(store: ReplayStore, seed: int, kind: str = "expert") -> str:
    rng = np.random.default_rng(seed)
    return write_synthetic_episode(
        store, make_episode(rng, kind, image_size=32, length_range=(30, 40)), task="synthetic"
    )


def test_a_rounds_refit_leaves_out_the_next_rounds_rollouts_recorded_meanwhile(store, tmp_path):
    """loop.mode=continual: the arms record round 1's rollouts while round 0's value refits."""
    ahead = write_synthetic_episode(
        store, make_episode(np.random.default_rng(3), "expert", image_size=32, length_range=(30, 40)),
        task="synthetic", round_index=1,
    )  # fmt: skip
    learner = ValueLearner(learner_config(store, tmp_path / "ckpt"), model_config("static"))
    version = learner.refit(0, up_to_round=True)
    assert load_norm_stats(version_dir(tmp_path / "ckpt", version))["provenance"]["episodes"] == len(KINDS)
    assert store.record(ahead).meta.round == 1
    assert learner.refit(1) == version + 1  # without the limit: every labelled episode
    assert (
        load_norm_stats(version_dir(tmp_path / "ckpt", version + 1))["provenance"]["episodes"]
        == len(KINDS) + 1
    )


@pytest.mark.parametrize("kind", ["viva", "wvm", "static"])
def test_refit_publishes_increasing_versions_and_labels_every_episode(store, tmp_path, kind):
    learner = ValueLearner(learner_config(store, tmp_path / "ckpt"), model_config(kind))
    recorded = {e: store.read_episode(e, ["state", "progress"]) for e in store.episode_ids()}

    assert learner.refit(0) == 1
    assert learner.label() == len(KINDS)
    key = learner.label_key(1)
    assert key == f"{kind}-v000001"
    for episode_id in store.episode_ids():
        values = store.read_derived("value", key, episode_id)
        assert values.shape == (store.record(episode_id).meta.length,)
        assert np.isfinite(values).all()
    assert learner.label() == 0, "labelling again only labels episodes that lack the column"

    add_episode(store, seed=7)
    assert learner.refit(1) == 2
    assert learner.refit(1) == 2, "a round already published is not refitted"
    assert list_versions(tmp_path / "ckpt") == [1, 2]
    assert load_norm_stats(version_dir(tmp_path / "ckpt", 2))["provenance"]["episodes"] == len(KINDS) + 1
    assert learner.label(2) == len(KINDS) + 1
    for episode_id, columns in recorded.items():
        after = store.read_episode(episode_id, ["state", "progress"])
        assert all(np.array_equal(after[c], columns[c], equal_nan=True) for c in columns)


def test_unlabelled_episodes_are_not_trained_on_but_get_labelled(store, tmp_path):
    writer_id = add_episode(store, seed=3)
    store.set_outcome(writer_id, "unlabelled", labelled_by="test")
    learner = ValueLearner(learner_config(store, tmp_path / "ckpt", steps=2), model_config("static"))
    learner.refit(0)
    assert load_norm_stats(tmp_path / "ckpt")["provenance"]["episodes"] == len(KINDS)
    assert learner.label() == len(KINDS) + 1


class NaNAfter(torch.nn.Module):
    """Wraps a value model; its loss turns NaN from call ``at`` on (a diverging run)."""

    def __init__(self, model, at: int, until: int | None = None) -> None:
        super().__init__()
        self.inner, self.config, self.at, self.until, self.calls = model, model.config, at, until, 0

    def loss(self, batch, **kwargs):
        out = self.inner.loss(batch, **kwargs)
        self.calls += 1
        if self.at <= self.calls and (self.until is None or self.calls < self.until):
            out["loss"] = out["loss"] * float("nan")
        return out

    def save(self, directory):
        self.inner.save(directory)


def test_nan_loss_stops_with_a_clear_error_and_publishes_nothing(store, tmp_path):
    config = learner_config(store, tmp_path / "ckpt")
    factory = lambda cfg: NaNAfter(build_value_model(cfg), at=6)  # noqa: E731
    learner = ValueLearner(config, model_config("static"), model_factory=factory)
    with pytest.raises(NonFiniteLossError, match="non-finite loss/gradient at step 5"):
        learner.refit(0)
    assert list_versions(tmp_path / "ckpt") == []
    assert learner.latest_version() is None


def test_nan_policy_skip_tolerates_a_transient_nan(store, tmp_path):
    config = learner_config(store, tmp_path / "ckpt", nan_policy="skip", max_nonfinite_skips=2)
    factory = lambda cfg: NaNAfter(build_value_model(cfg), at=3, until=5)  # noqa: E731
    learner = ValueLearner(config, model_config("static"), model_factory=factory)
    assert learner.refit(0) == 1
    assert learner.metrics["steps"] == config.steps


def test_resume_after_kill_continues_from_the_checkpoint(store, tmp_path):
    root = tmp_path / "ckpt"
    config = learner_config(store, root, steps=80, checkpoint_every=10)
    (tmp_path / "learner.json").write_text(json.dumps(config.__dict__))
    model_config("viva").save_json(tmp_path / "model.json")
    command = [sys.executable, "-m", "learners.value_learner", "refit", "--round", "0",
               "--learner-config", str(tmp_path / "learner.json"), "--model-config", str(tmp_path / "model.json")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    state_file = root / "train_state" / "state.pt"
    deadline = time.monotonic() + 90
    while not state_file.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert state_file.exists(), proc.stdout.read().decode()[-2000:]
    checkpoint_step = torch.load(state_file, weights_only=False)["step"]
    assert checkpoint_step >= 10 and checkpoint_step < config.steps
    assert list_versions(root) == []

    resumed = ValueLearner(config, model_config("viva"))
    assert resumed.refit(0) == 1
    assert resumed.metrics["steps"] == config.steps - checkpoint_step, (
        "resumed from the checkpoint, not from 0"
    )
    assert load_norm_stats(root)["provenance"]["steps"] == config.steps
    assert list_versions(root) == [1]
    assert resumed.refit(0) == 1


def test_continual_mode_sees_episodes_committed_after_it_started(store, tmp_path):
    root = tmp_path / "ckpt"
    config = learner_config(store, root, mode="continual", continual_chunk_steps=3, continual_poll_s=0.05)
    learner = ValueLearner(config, model_config("static"))
    stop = threading.Event()
    published: list[int] = []
    thread = threading.Thread(target=lambda: published.extend(learner.run_continual(stop.is_set)))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not list_versions(root) and time.monotonic() < deadline:
            time.sleep(0.05)
        first = list_versions(root)[0]
        assert load_norm_stats(version_dir(root, first))["provenance"]["episodes"] == len(KINDS)
        new_episode = add_episode(store, seed=11)
        seen = False
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
            seen = any(
                load_norm_stats(version_dir(root, v))["provenance"]["episodes"] == len(KINDS) + 1
                for v in list_versions(root)
            )
        assert seen, "no version was trained on the episode committed while the learner ran"
        assert learner.model is not None
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert published == sorted(published) and published[0] == first
    assert new_episode in ReplayStore.open(str(store.location.url)).episode_ids()


def test_a_model_that_does_not_fit_the_robot_is_refused_before_training(store, tmp_path):
    config = learner_config(store, tmp_path / "ckpt")
    with pytest.raises(ValueError, match=r"cameras \['top'\], which the robot .* Set valuemodel.cameras"):
        ValueLearner(config, replace(model_config(), cameras=["front", "top"]))
    with pytest.raises(
        ValueError, match=r"state_dim is 9.* 6 state values .*valuemodel.state_dim to its width"
    ):
        ValueLearner(config, replace(model_config(), state_dim=9))
    assert not (tmp_path / "ckpt").exists()
