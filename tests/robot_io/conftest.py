"""Fixtures of the robot tests: LeRobot devices over the simulator (``sim_lerobot``) and arm configs for them."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

from robot_io import LeRobotArmConfig

IMAGE_HEIGHT, IMAGE_WIDTH = 32, 48


@pytest.fixture(scope="module")
def sim_lerobot() -> ModuleType:
    # LeRobot looks for a plugin's device class in its config's parent module; for a top-level module that is
    # the module itself, so the helper is loaded top-level, like an installed lerobot_robot_* plugin.
    helper_dir = str(Path(__file__).parent)
    if helper_dir not in sys.path:
        sys.path.insert(0, helper_dir)
    return importlib.import_module("sim_lerobot")


@pytest.fixture(scope="module")
def sim_limits(sim_lerobot: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> tuple[list, list]:
    """The simulator's own position limits, which the tests configure as the arm's limits."""
    calibration_dir = tmp_path_factory.mktemp("calibration")
    device = sim_lerobot.VivarlSimArm(sim_lerobot.VivarlSimArmConfig(calibration_dir=calibration_dir))
    return device.sim.spec.action_low.tolist(), device.sim.spec.action_high.tolist()


@pytest.fixture
def arm_config(sim_lerobot: ModuleType, tmp_path: Path, sim_limits: tuple[list, list]):
    """Builds the arm config for the registered simulator type, with extra LeRobot robot kwargs."""

    def build(**robot_kwargs: object) -> LeRobotArmConfig:
        return LeRobotArmConfig(
            robot_type=sim_lerobot.SIM_ROBOT_TYPE,
            robot_kwargs={"id": "sim_arm", "calibration_dir": str(tmp_path), **robot_kwargs},
            action_low=sim_limits[0],
            action_high=sim_limits[1],
            control_hz=10.0,
            image_height=IMAGE_HEIGHT,
            image_width=IMAGE_WIDTH,
        )

    return build
