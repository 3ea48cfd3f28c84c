"""The robot actor's work without Ray: demonstrations, rollouts with corrections, evaluation, weight swaps."""

from __future__ import annotations

import numpy as np
import pytest

from actors.robot_actor import ActorSettings, RobotWorker, check_resources
from actors.weights import pack_checkpoint, unpack_checkpoint
from replay import EpisodeFilter, FrameIndex, ReplayStore
from robot_io import RobotConfig, SimBoxConfig
from robot_io.config import ExpertConfig


def sim_settings(tmp_path, name="sim0", **expert) -> ActorSettings:
    robot = RobotConfig(
        type="sim_box",
        name=name,
        sim_box=SimBoxConfig(image_height=32, image_width=32, max_steps=260, expert=ExpertConfig(**expert)),
    )
    return ActorSettings(robot=robot, store_url=str(tmp_path / "replay"), task="box_assembly")


def test_demonstrations_are_committed_with_outcome_purpose_and_tags(tmp_path):
    worker = RobotWorker(sim_settings(tmp_path, hesitation_prob=1.0, hesitation_steps=[5, 5]))
    summaries = worker.run_episodes("demo", round=0, seeds=[0, 1])
    worker.close()
    store = ReplayStore.open(str(tmp_path / "replay"))
    records = store.records()
    assert sorted(records) == sorted(s["episode_id"] for s in summaries)
    for summary in summaries:
        meta = records[summary["episode_id"]].meta
        assert meta.purpose == "demo" and meta.round == 0 and meta.robot_id == "sim0"
        assert meta.outcome.value == summary["outcome"] == "success"
        assert meta.labelled_by == "simulator"
        assert "pause" in meta.tags
        assert meta.length == summary["steps"]


def test_rollout_without_a_policy_is_a_clear_error(tmp_path):
    worker = RobotWorker(sim_settings(tmp_path))
    with pytest.raises(RuntimeError, match="no policy yet"):
        worker.run_episodes("rollout", round=1, seeds=[0])
    with pytest.raises(ValueError, match="purpose must be one of"):
        worker.run_episodes("practice", round=1, seeds=[0])
    worker.close()
    assert ReplayStore.open(str(tmp_path / "replay")).episode_ids() == []


class StandStill:
    """A policy that never moves: the corrector must take over, and those steps are flagged."""

    def __init__(self, robot):
        self.robot = robot

    def reset(self, seed=None):
        pass

    def discard_plan(self):
        pass

    def act(self, observation):
        return self.robot.hold_action()


def test_corrections_are_flagged_as_interventions(tmp_path):
    settings = sim_settings(tmp_path)
    settings.robot.sim_box.expert.takeover_stall_steps = 10
    settings.robot.sim_box.expert.handback_after_stages = 0
    worker = RobotWorker(settings)
    worker.policy, worker.policy_version = StandStill(worker.robot), "v-still"
    (summary,) = worker.run_episodes("rollout", round=1, seeds=[3])
    (evaluation,) = worker.run_episodes("eval", round=1, seeds=[3])
    worker.close()
    store = ReplayStore.open(str(tmp_path / "replay"))
    rollout = store.record(summary["episode_id"]).meta
    assert rollout.intervention_steps == summary["intervention_steps"] > 0
    assert rollout.policy_version == "v-still" and "take_over" in rollout.tags
    assert summary["outcome"] == "success"  # the corrector finished the task
    data = store.read_episode(summary["episode_id"])
    assert not data["intervention"][:10].any() and data["intervention"][-1]
    # Evaluation runs the policy alone: no takeover, so standing still fails.
    assert evaluation["intervention_steps"] == 0 and evaluation["outcome"] == "failure"
    index = FrameIndex(store, EpisodeFilter(purposes=("eval",)))
    index.refresh()
    assert set(index.episode_ids) == {evaluation["episode_id"]}


def test_packed_checkpoint_round_trips_and_refuses_unsafe_names(tmp_path):
    folder = tmp_path / "v000001"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(np.arange(10, dtype=np.uint8).tobytes())
    (folder / "config.json").write_text("{}")
    (folder / "backbone" / "vae").mkdir(parents=True)  # a value checkpoint's backbone sits in subfolders
    (folder / "backbone" / "vae" / "config.json").write_text('{"z": 1}')
    packed = pack_checkpoint(folder, "v000001")
    unpacked = unpack_checkpoint(packed, tmp_path)
    assert (unpacked / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    assert (unpacked / "backbone" / "vae" / "config.json").read_text() == '{"z": 1}'
    with pytest.raises(ValueError, match="unsafe name"):
        unpack_checkpoint(type(packed)(version="x", files={"backbone/../../evil": b""}), tmp_path)
    with pytest.raises(ValueError, match="unsafe name"):
        unpack_checkpoint(type(packed)(version="x", files={"../evil": b""}), tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        pack_checkpoint(tmp_path / "missing", "v9")


def test_missing_node_resource_fails_before_any_arm_moves():
    arms = [RobotConfig(name="arm0"), RobotConfig(name="arm1", node_resource="lab:bench2")]
    check_resources(arms, {"robot:arm0": 1.0, "lab:bench2": 1.0, "CPU": 2.0})
    with pytest.raises(RuntimeError, match=r"arm 'arm1' needs resource 'lab:bench2'.*ray start"):
        check_resources(arms, {"robot:arm0": 1.0})


def test_a_configured_success_detector_labels_without_asking(tmp_path):
    settings = sim_settings(tmp_path)
    settings.robot.success_detector = "operator:truth"  # any observation is truthy: done after the first step
    worker = RobotWorker(settings)
    (summary,) = worker.run_episodes("demo", round=0, seeds=[0])
    worker.close()
    meta = ReplayStore.open(str(tmp_path / "replay")).record(summary["episode_id"]).meta
    assert (meta.outcome.value, meta.labelled_by, meta.length) == ("success", "success-detector", 1)
    settings.robot.success_detector = "operator"
    with pytest.raises(ValueError, match="must be 'module:function'"):
        RobotWorker(settings)
