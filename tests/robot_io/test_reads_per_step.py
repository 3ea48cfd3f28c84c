"""A control step costs a real arm one reading and one write, directly and across the bridge alike.

On an SO-101 one ``get_observation`` is every motor plus a fresh frame from every camera, so an extra read per
step (the safety layer used to ask the arm for its hold action on every ``send_action``) halves the rate a loop
can hold. The arm here is LeRobot's Robot API over the simulator, counting what reaches its "hardware".
"""

from __future__ import annotations

import numpy as np
import pytest

from actors.episode import run_episode
from robot_io import RobotConfig, SafeRobot, SafetyConfig
from robot_io.bridge import BridgeClient, BridgeServer
from robot_io.config import BridgeClientConfig, BridgeServerConfig
from robot_io.lerobot_adapter import make_lerobot_robot

STEPS = 12


class NudgePolicy:
    """Moves the first joint a little each step, and asks for a non-finite action once (which is held)."""

    def __init__(self) -> None:
        self.steps = 0

    def reset(self, seed: int | None = None) -> None:
        self.steps = 0

    def discard_plan(self) -> None:
        pass

    def act(self, observation) -> np.ndarray:
        self.steps += 1
        action = observation.state[:5].copy()
        action[0] += 0.002
        if self.steps == 3:
            action[1] = np.nan
        return action


def test_a_lerobot_arm_is_read_once_per_step_through_the_safety_layer(arm_config) -> None:
    arm = make_lerobot_robot(arm_config())
    robot = SafeRobot(arm, SafetyConfig(watchdog_timeout_s=0.0))
    with robot:
        device = arm.robot
        reads, writes = device.reads, device.writes
        result = run_episode(robot, NudgePolicy(), max_steps=STEPS)
        assert result.steps == STEPS
        assert robot.stats.refused_nonfinite == 1  # the NaN step was held, from the last reading
        # One reading to start, then one per step (the observation the next step acts on), one write per step.
        assert device.reads - reads == STEPS + 1
        assert device.writes - writes == STEPS


@pytest.fixture
def lerobot_server(arm_config):
    arm = make_lerobot_robot(arm_config())
    config = BridgeServerConfig(
        address="tcp://127.0.0.1:*",
        allow_plaintext=True,
        teleop=False,
        robot=RobotConfig(type="lerobot", lerobot=arm_config(), safety=SafetyConfig(watchdog_timeout_s=0.0)),
    )
    server = BridgeServer(config, arm).start()
    yield server, arm
    server.stop()


def test_a_bridged_lerobot_arm_is_read_once_per_step_on_both_sides(lerobot_server) -> None:
    server, arm = lerobot_server
    client = BridgeClient(BridgeClientConfig(address=server.endpoint, allow_plaintext=True))
    robot = SafeRobot(client, SafetyConfig(watchdog_timeout_s=0.0))
    with robot:
        device = arm.robot
        reads, writes, requests = device.reads, device.writes, server.stats.requests
        result = run_episode(robot, NudgePolicy(), max_steps=STEPS)
        assert result.steps == STEPS and robot.stats.refused_nonfinite == 1
        assert device.reads - reads == STEPS + 1
        assert device.writes - writes == STEPS
        # Across the link: start_episode, then one action and one observation a step, then end_episode; holding
        # (the NaN step) used the hold the server sent with the last reading, not a request of its own.
        assert server.stats.requests - requests == 1 + 2 * STEPS + 1
