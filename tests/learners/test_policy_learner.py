"""End to end on the simulator: expert episodes (recorded by the robot actor's loop) -> replay store -> advantage
labels -> policy rounds -> run_episode."""

from __future__ import annotations

import numpy as np
import pytest

from actors.episode import run_episode
from actors.local import record_demonstrations, sim_arm
from learners.policy_data import chunk_action_stats
from learners.policy_labels import LabellingConfig, label_store
from learners.policy_learner import PolicyLearner, PolicyLearnerConfig, cosine_learning_rate
from policy import PolicyConfig, load_policy, read_meta
from replay import ReplayStore
from robot_io.config import ExpertConfig, SimBoxConfig

SIM = SimBoxConfig(cameras=["front", "wrist"], image_height=32, image_width=32, max_steps=40)
TINY_POLICY = PolicyConfig(
    cameras=["front", "wrist"],
    image_size=32,
    chunk_size=4,
    execute_steps=2,
    encoder_channels=8,
    feature_dim=32,
    hidden_dim=64,
    flow_steps=3,
)


@pytest.fixture(scope="module")
def labelled_store(tmp_path_factory):
    url = str(tmp_path_factory.mktemp("policy-e2e") / "store")
    record_demonstrations(url, sim_arm(SIM, ExpertConfig(hesitation_prob=0.5)), [0, 1], round=0)
    record_demonstrations(url, sim_arm(SIM), [2], round=1)
    label_store(ReplayStore.open(url), LabellingConfig(run="lab0", horizon=10))
    return url


def learner_config(url: str, checkpoints: str, **overrides) -> PolicyLearnerConfig:
    base = dict(
        store_url=url,
        checkpoint_dir=checkpoints,
        policy=TINY_POLICY,
        labelling_run="lab0",
        steps=4,
        batch_size=4,
        log_every=2,
    )
    return PolicyLearnerConfig(**{**base, **overrides})


def test_rounds_train_save_provenance_and_deploy_in_run_episode(labelled_store, tmp_path):
    from robot_io.sim import BoxAssemblySim

    checkpoints = str(tmp_path / "ckpt")
    lines: list[str] = []
    learner = PolicyLearner(
        learner_config(labelled_store, checkpoints, restart_each_round=False), log=lines.append
    )
    first = learner.train_round(0)
    meta = read_meta(first.checkpoint)
    assert first.version == 0 and len(first.losses) == 4 and first.frames == 80
    assert meta["labelling_run"] == "lab0" and meta["extraction"] == "recap" and meta["round"] == 0
    assert meta["started_from"] is None and len(meta["episodes"]) == 2
    assert 0.0 <= first.data_wait_fraction <= 1.0 and first.samples_per_s > 0
    second = learner.train_round(1)
    meta = read_meta(second.checkpoint)
    assert second.version == 1 and meta["round"] == 1 and len(meta["episodes"]) == 3
    assert meta["started_from"].endswith("v000000"), "continuing from the previous round's policy"
    assert any("step 4/4" in line for line in lines)

    sim = BoxAssemblySim(SIM)
    sim.connect()
    try:
        policy = load_policy(checkpoints)
        assert policy.version == 1 and policy.config.deploy_indicator == "positive"
        result = run_episode(sim, policy, max_steps=5, seed=7)
    finally:
        sim.disconnect()
    assert result.steps == 5
    # Asked again for the same round and request (a restarted learner, a resumed driver): the version published.
    again = learner.train_round(1)
    assert (again.version, again.checkpoint, again.frames) == (1, second.checkpoint, second.frames)
    assert again.losses == [second.losses[-1]] and any("not trained again" in line for line in lines)
    assert learner.train_round(1, start_from=str(first.checkpoint)).version == 2, "another request trains"


def test_too_few_frames_for_one_batch_is_a_clear_error(labelled_store, tmp_path):
    config = learner_config(labelled_store, str(tmp_path / "ckpt"), batch_size=1000)
    with pytest.raises(ValueError, match="no full batch of 1000"):
        PolicyLearner(config, log=lambda _: None).train_round(0)


@pytest.mark.parametrize("extraction", ["bc", "filtered_bc", "awr"])
def test_every_extraction_method_trains(labelled_store, tmp_path, extraction):
    run = None if extraction == "bc" else "lab0"
    config = learner_config(
        labelled_store, str(tmp_path / extraction), extraction=extraction, labelling_run=run
    )
    result = PolicyLearner(config, log=lambda _: None).train_round(0)
    meta = read_meta(result.checkpoint)
    assert meta["extraction"] == extraction and meta["labelling_run"] == run
    assert meta["started_from"] is None and all(loss == loss for loss in result.losses)
    if extraction == "filtered_bc":
        assert 0 < result.frames < 80


def test_config_checks_and_schedule():
    with pytest.raises(ValueError, match="labelling_run"):
        PolicyLearnerConfig(store_url="x", checkpoint_dir="y", extraction="recap")
    with pytest.raises(ValueError, match="extraction"):
        PolicyLearnerConfig(store_url="x", checkpoint_dir="y", extraction="ppo", labelling_run="l")
    assert cosine_learning_rate(0, 1000, 1.0) == pytest.approx(0.01)
    assert cosine_learning_rate(100, 1000, 1.0) == pytest.approx(1.0)
    assert cosine_learning_rate(1000, 1000, 1.0) == pytest.approx(0.1)


def test_restart_recipe_starts_every_round_from_the_base_checkpoint(labelled_store, tmp_path):
    base = PolicyLearner(
        learner_config(labelled_store, str(tmp_path / "base"), extraction="bc", labelling_run=None)
    )
    base_folder = base.train_round(0).checkpoint
    config = learner_config(labelled_store, str(tmp_path / "recap"), base_checkpoint=str(base_folder))
    learner = PolicyLearner(config, log=lambda _: None)
    for round_index in (0, 1):
        meta = read_meta(learner.train_round(round_index).checkpoint)
        assert meta["started_from"] == str(base_folder) and meta["round"] == round_index


def test_chunk_action_stats_are_per_chunk_step_and_relative_where_asked(labelled_store):
    store = ReplayStore.open(labelled_store)
    records = list(store.records().values())
    stats = chunk_action_stats(store, records, chunk_size=3, relative_dims=[0, 1, 2])
    assert stats["mean"].shape == (3, 5) and stats["std"].shape == (3, 5)
    targets = []
    for record in records:
        columns = store.read_episode(record.meta.episode_id, ["state", "action"])
        state, action = columns["state"], columns["action"]
        for t in range(len(action)):
            window = action[np.minimum(np.arange(t, t + 3), len(action) - 1)].copy()
            window[:, :3] -= state[t, :3]
            targets.append(window)
    np.testing.assert_allclose(stats["mean"], np.mean(targets, 0), atol=1e-5)
    np.testing.assert_allclose(stats["std"], np.std(targets, 0), atol=1e-5)


def test_a_round_can_continue_from_the_deployed_policy_rather_than_the_newest_one(labelled_store, tmp_path):
    learner = PolicyLearner(
        learner_config(labelled_store, str(tmp_path / "ckpt"), extraction="bc", labelling_run=None),
        log=lambda _: None,
    )
    deployed = learner.train_round(0).checkpoint
    rejected = learner.train_round(1).checkpoint
    # The gate kept round 0's policy: round 2 continues from it, not from the newest (rejected) version.
    meta = read_meta(learner.train_round(2, start_from=str(deployed)).checkpoint)
    assert meta["started_from"] == str(deployed) != str(rejected)
    assert read_meta(learner.train_round(3).checkpoint)["started_from"] is None
