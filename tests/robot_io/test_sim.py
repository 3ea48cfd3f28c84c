"""The box-assembly simulator: Robot protocol, determinism, limits, task ground truth, gym wrapper."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from robot_io import (
    ActionError,
    Robot,
    RobotError,
    SafeRobot,
    SafetyConfig,
    SimBoxConfig,
    validate_observation,
)
from robot_io.sim import STATE_NAMES, BoxAssemblyEnv, BoxAssemblySim


@pytest.fixture(scope="module")
def sim():
    robot = BoxAssemblySim(SimBoxConfig())
    robot.connect()
    yield robot
    robot.disconnect()


def _wiggle(sim: BoxAssemblySim, steps: int) -> list:
    """A fixed, contact-free action sequence; returns the observations it produced."""
    obs = []
    start = sim.hold_action()
    for k in range(steps):
        target = start + np.array([0.03 * np.sin(k / 3), 0.02 * np.cos(k / 4), -0.004 * k, 0.05 * k, 0.0])
        sim.send_action(target.astype(np.float32))
        obs.append(sim.get_observation())
    return obs


def test_implements_robot_protocol_and_spec(sim):
    assert isinstance(sim, Robot)
    spec = sim.spec
    assert spec.camera_names == ("front", "top", "wrist")
    assert spec.state_names == STATE_NAMES
    assert spec.action_dim == 5 and spec.max_action_delta is not None
    obs = sim.start_episode(0)
    validate_observation(obs, spec)
    for image in obs.images.values():
        assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
        assert image.std() > 5.0, "camera image is blank"
    assert obs.info["stage"] == 0.0 and 0.0 <= obs.info["progress"] < 0.25
    assert obs.info["success"] == 0.0 and obs.info["failed"] == 0.0
    assert obs.timestamp == 0.0
    np.testing.assert_allclose(sim.hold_action(), obs.state[:5], atol=1e-6)


def test_same_seed_same_episode_and_other_seed_differs(sim):
    first = [sim.start_episode(7), *_wiggle(sim, 12)]
    second = [sim.start_episode(7), *_wiggle(sim, 12)]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.state, b.state)
        for cam in a.images:
            np.testing.assert_array_equal(a.images[cam], b.images[cam])
        assert a.info == b.info
    other = sim.start_episode(8)
    assert not np.array_equal(other.images["front"], first[0].images["front"])
    assert first[-1].timestamp == pytest.approx(12 / sim.spec.control_hz)


def test_bad_actions_are_refused_or_clipped(sim):
    sim.start_episode(1)
    with pytest.raises(ActionError, match="shape"):
        sim.send_action(np.zeros(4, dtype=np.float32))
    with pytest.raises(ActionError):
        sim.send_action(np.zeros((5, 1), dtype=np.float32))
    before = sim.last_command
    applied = sim.send_action(np.array([9.0, -9.0, 9.0, 9.0, 9.0], dtype=np.float32))
    assert np.all(applied <= sim.spec.action_high) and np.all(applied >= sim.spec.action_low)
    assert np.all(np.abs(applied - before) <= sim.spec.max_action_delta + 1e-6)
    held = sim.send_action(np.array([np.nan] * 5, dtype=np.float32))
    assert np.all(np.isfinite(held))


def test_needs_connect_and_episode():
    robot = BoxAssemblySim(SimBoxConfig(cameras=["top"], image_height=48, image_width=40))
    assert robot.spec.cameras[0].shape == (48, 40, 3)
    with pytest.raises(RobotError, match="connect"):
        robot.start_episode(0)
    robot.connect()
    try:
        with pytest.raises(RobotError, match="episode"):
            robot.send_action(np.zeros(5, dtype=np.float32))
        assert robot.start_episode(0).images["top"].shape == (48, 40, 3)
    finally:
        robot.disconnect()
    with pytest.raises(ValueError, match="cameras"):
        BoxAssemblySim(SimBoxConfig(cameras=["ceiling"]))


def test_hold_action_keeps_the_arm_still(sim):
    sim.start_episode(2)
    start = sim.hold_action()
    for _ in range(10):
        sim.send_action(sim.hold_action())
    assert np.abs(sim.hold_action()[:3] - start[:3]).max() < 0.002


def test_safe_robot_clamps_out_of_range_actions():
    robot = SafeRobot(BoxAssemblySim(SimBoxConfig()), SafetyConfig(watchdog_timeout_s=0.0))
    with robot:
        robot.start_episode(3)
        target = robot.hold_action() + np.array([0.0, 0.0, 5.0, 0.0, 0.0], dtype=np.float32)
        applied = robot.send_action(target)
        assert applied[2] <= robot.spec.action_high[2]
        assert robot.stats.clamped >= 1
        assert isinstance(robot, Robot)


def test_time_limit_ends_the_episode_as_a_failure():
    robot = BoxAssemblySim(SimBoxConfig(max_steps=15))
    robot.connect()
    try:
        robot.start_episode(4)
        while not robot.episode_done:
            robot.send_action(robot.hold_action())
        info = robot.get_observation().info
        assert robot.step_count == 15 and robot.done
        assert info["done"] == 1.0 and info["timed_out"] == 1.0 and info["failed"] == 1.0
        assert info["success"] == 0.0
    finally:
        robot.disconnect()


def test_pushing_a_flap_raises_progress_only_after_the_item_is_placed(sim):
    """Stages are ordered: folding a flap first leaves the stage at 'grasp', and progress is unchanged by it."""
    from robot_io.sim import skills

    sim.start_episode(5)
    progress_before = sim.task.progress
    for waypoint in skills.fold_panel(sim, sim.last_command, "flap_left"):
        for _ in range(6):
            sim.send_action(waypoint.target.astype(np.float32))
    assert sim.panel_angle("flap_left") < np.radians(8)
    assert sim.task.stage == 0
    assert sim.task.progress <= progress_before + 0.06  # only the gripper's distance to the item changed


def test_gym_wrapper_passes_env_checker():
    from gymnasium.utils.env_checker import check_env

    env = BoxAssemblyEnv(SimBoxConfig(max_steps=20), render_mode="rgb_array")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_env(env)
        obs, info = env.reset(seed=3)
        assert set(obs) == {"state", "images"} and obs["images"]["front"].shape == (64, 64, 3)
        total, truncated, steps = 0.0, False, 0
        first = info["progress"]
        while not truncated:
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            total += reward
            steps += 1
            assert not terminated
        assert steps == 20
        assert total == pytest.approx(info["progress"] - first, abs=1e-9)
        assert env.render().shape == (64, 64, 3)
    finally:
        env.close()


def test_importing_robot_io_does_not_import_mujoco():
    code = "import sys, robot_io; assert 'mujoco' not in sys.modules, 'robot_io imported mujoco'"
    subprocess.run([sys.executable, "-c", code], check=True)
