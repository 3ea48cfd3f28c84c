"""robot_io: every arm behind one Robot protocol, always wrapped in the safety layer.

Exposes the seam types (``Robot``, ``Teleoperator``, ``RobotSpec``, ``CameraSpec``, ``Observation``), the safety
layer (``SafeRobot``, ``SafetyConfig``, ``SafetyStats``), the config (``RobotConfig`` and its sections, among
them ``ArmModelDefaults``: which cameras and actions the models read from the arm), ``make_robot``, and the one
rule that fits a frame to another size (``letterbox``, ``robot_io.images``). The implementations live in submodules and import their heavy dependencies lazily:
``robot_io.sim`` (MuJoCo box assembly, scripted expert), ``robot_io.lerobot_adapter`` (real arms through LeRobot)
and ``robot_io.bridge`` (ZeroMQ bridge to an arm's control PC).
"""

from robot_io.config import (
    ROBOT_TYPES,
    ArmModelDefaults,
    BridgeClientConfig,
    BridgeServerConfig,
    ExpertConfig,
    LeRobotArmConfig,
    RobotConfig,
    SimBoxConfig,
)
from robot_io.factory import make_raw_robot, make_robot
from robot_io.images import letterbox
from robot_io.robot import Robot, Teleoperator
from robot_io.safety import SafeRobot, SafetyConfig, SafetyStats
from robot_io.spec import ActionError, CameraSpec, Observation, RobotError, RobotSpec, validate_observation

__all__ = [
    "ROBOT_TYPES",
    "ActionError",
    "ArmModelDefaults",
    "BridgeClientConfig",
    "BridgeServerConfig",
    "CameraSpec",
    "ExpertConfig",
    "LeRobotArmConfig",
    "Observation",
    "Robot",
    "RobotConfig",
    "RobotError",
    "RobotSpec",
    "SafeRobot",
    "SafetyConfig",
    "SafetyStats",
    "SimBoxConfig",
    "Teleoperator",
    "letterbox",
    "make_raw_robot",
    "make_robot",
    "validate_observation",
]
