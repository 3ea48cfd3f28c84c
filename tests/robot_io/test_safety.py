"""The safety layer clamps, rate-limits, refuses non-finite actions and holds on a stale link."""

from __future__ import annotations

import time

import numpy as np
import pytest

from robot_io import ActionError, RobotError, SafeRobot, SafetyConfig, SimBoxConfig
from robot_io.sim.box_sim import BoxAssemblySim


@pytest.fixture
def sim():
    robot = BoxAssemblySim(SimBoxConfig(image_height=32, image_width=32))
    yield robot
    if robot.is_connected:
        robot.disconnect()


def drive(robot: SafeRobot, action, steps: int = 60) -> np.ndarray:
    """Send the same target until the per-step limit has let the arm reach it (or its clamp)."""
    for _ in range(steps):
        applied = robot.send_action(np.asarray(action, dtype=np.float32))
    return applied


def safe(sim, **config) -> SafeRobot:
    robot = SafeRobot(sim, SafetyConfig(watchdog_timeout_s=config.pop("watchdog_timeout_s", 0.0), **config))
    robot.connect()
    robot.start_episode(seed=0)
    return robot


def test_out_of_range_action_is_clamped_to_position_limits(sim):
    robot = safe(sim)
    spec = robot.spec
    applied = robot.send_action(spec.action_high + 1.0)
    assert np.all(applied <= spec.action_high + 1e-6)
    assert robot.stats.clamped == 1
    np.testing.assert_allclose(drive(robot, spec.action_high + 1.0), spec.action_high, atol=1e-6)
    robot.disconnect()


def test_configured_limits_tighten_but_never_widen(sim):
    low = [-0.1, -0.1, 0.05, -1.0, 0.0]
    high = [0.1, 0.1, 0.2, 1.0, 0.08]
    robot = safe(sim, position_low=[-9.0] * 5, position_high=high, max_delta=[10.0] * 5)
    np.testing.assert_allclose(drive(robot, np.full(5, 5.0)), high, atol=1e-6)
    applied = drive(robot, np.full(5, -9.0))
    # position_low=-9 is looser than the spec, so the spec's own lower limits apply.
    np.testing.assert_allclose(applied, robot.spec.action_low, atol=1e-6)
    robot.disconnect()
    robot = safe(sim, position_low=low, max_delta=[10.0] * 5)
    np.testing.assert_allclose(drive(robot, np.full(5, -9.0)), low, atol=1e-6)
    robot.disconnect()


def test_change_per_step_is_limited(sim):
    robot = safe(sim, max_delta=[0.01, 0.01, 0.01, 0.1, 0.01])
    start = robot.hold_action()
    applied = robot.send_action(start + np.array([0.2, 0.0, 0.0, 0.0, 0.0], dtype=np.float32))
    assert applied[0] == pytest.approx(start[0] + 0.01, abs=1e-5)
    assert robot.stats.rate_limited == 1
    robot.disconnect()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_action_is_refused_and_the_arm_holds(sim, bad):
    robot = safe(sim)
    hold = robot.hold_action()
    action = hold.copy()
    action[2] = bad
    applied = robot.send_action(action)
    np.testing.assert_allclose(applied, hold, atol=1e-5)
    assert robot.stats.refused_nonfinite == 1
    assert robot.stats.clamped == 0
    robot.disconnect()


def test_watchdog_holds_when_actions_stop(sim):
    robot = safe(sim, watchdog_timeout_s=0.05)
    robot.send_action(robot.hold_action())
    steps_before = sim.step_count
    deadline = time.monotonic() + 2.0
    while robot.stats.watchdog_holds == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert robot.stats.watchdog_holds == 1
    # The hold reached the arm (the simulator advanced one control step) and fired once per stale period.
    time.sleep(0.2)
    assert robot.stats.watchdog_holds == 1
    assert sim.step_count == steps_before + 1
    robot.end_episode()
    robot.disconnect()


def test_watchdog_is_quiet_between_episodes(sim):
    robot = safe(sim, watchdog_timeout_s=0.05)
    robot.end_episode()
    time.sleep(0.3)
    assert robot.stats.watchdog_holds == 0
    robot.disconnect()


def test_bad_action_shape_is_a_clear_error(sim):
    robot = safe(sim)
    with pytest.raises(ActionError, match=r"shape \(5,\)"):
        robot.send_action(np.zeros(3))
    with pytest.raises(ActionError, match="sequence of 5 numbers"):
        robot.send_action(["left", "up"])
    robot.disconnect()


def test_send_before_connect_is_a_clear_error(sim):
    with pytest.raises(RobotError, match="connect"):
        SafeRobot(sim).send_action(np.zeros(5))


def test_bad_safety_config_is_a_clear_error(sim):
    with pytest.raises(ValueError, match="position_low needs 5 values"):
        SafeRobot(sim, SafetyConfig(position_low=[0.0])).connect()
    with pytest.raises(ValueError, match="watchdog_timeout_s"):
        SafeRobot(sim, SafetyConfig(watchdog_timeout_s=-1))


def test_holding_during_an_episode_keeps_the_last_applied_target_not_the_sagging_measurement(sim):
    robot = safe(sim)
    target = drive(robot, robot.hold_action() + np.array([0.02, 0.0, -0.02, 0.0, 0.0], np.float32), steps=5)
    # However far the measured pose lags the target (a loaded servo sits below it), holding re-sends the target.
    for _ in range(20):
        np.testing.assert_array_equal(robot.hold_action(), target)
        robot.send_action(robot.hold_action())
    np.testing.assert_array_equal(robot.send_action(np.full(5, np.nan, np.float32)), target)
    robot.end_episode()
    # Between episodes there is no command to keep: holding means the measured pose (within the limits).
    measured = sim.hold_action()
    np.testing.assert_allclose(robot.hold_action(), measured, atol=1e-6)
    robot.disconnect()
