"""Build a Robot (wrapped in the safety layer) from its config. Heavy imports stay inside each branch."""

from __future__ import annotations

from robot_io.config import RobotConfig
from robot_io.safety import SafeRobot


def make_raw_robot(config: RobotConfig):
    """The robot itself, without the safety layer (the bridge server wraps it on its own side)."""
    if config.type == "sim_box":
        from robot_io.sim import BoxAssemblySim

        return BoxAssemblySim(config.sim_box)
    if config.type == "lerobot":
        from robot_io.lerobot_adapter import make_lerobot_robot

        return make_lerobot_robot(config.lerobot)
    if config.type == "bridge":
        from robot_io.bridge import BridgeClient

        return BridgeClient(config.bridge)
    raise ValueError(f"unknown robot type '{config.type}'")


def make_robot(config: RobotConfig) -> SafeRobot:
    """Every robot an actor drives goes through the safety layer; there is no way to get one without it."""
    return SafeRobot(make_raw_robot(config), config.safety)
