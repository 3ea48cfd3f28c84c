"""LeRobot devices over vivarl's simulator, for testing the LeRobot adapter where no arm exists.

``VivarlSimArm`` is a ``lerobot.robots.Robot`` shaped like LeRobot's follower arms: one ``"<joint>.pos"`` motor
feature per simulator action dimension, one ``(H, W, 3)`` image feature per camera, and, when
``max_relative_target`` is set, each target capped relative to the present position with LeRobot's own
``ensure_safe_goal_position`` before it is sent, returning the capped targets. ``VivarlTestLeader`` is a
``lerobot.teleoperators.Teleoperator`` leader arm whose pose a test sets; ``VivarlTestPedalLeader`` adds a pedal
reported through ``get_teleop_events`` the way LeRobot's HIL-SERL teleops report interventions.

LeRobot locates a plugin's device class in the parent module of its config's module; as a top-level module that
is this module itself, so tests import this file as ``sim_lerobot`` with its folder on ``sys.path``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from lerobot.robots import Robot, RobotConfig
from lerobot.robots.utils import ensure_safe_goal_position
from lerobot.teleoperators import Teleoperator, TeleoperatorConfig
from lerobot.teleoperators.utils import TeleopEvents
from lerobot.utils.errors import DeviceAlreadyConnectedError, DeviceNotConnectedError

from robot_io.config import SimBoxConfig
from robot_io.sim import BoxAssemblySim

SIM_ROBOT_TYPE = "vivarl_sim_test"
LEADER_TYPE = "vivarl_test_leader"
PEDAL_LEADER_TYPE = "vivarl_test_pedal_leader"


@RobotConfig.register_subclass(SIM_ROBOT_TYPE)
@dataclass
class VivarlSimArmConfig(RobotConfig):
    # Not called "cameras": LeRobot's RobotConfig expects that field to hold CameraConfig objects.
    sim_cameras: list[str] = field(default_factory=lambda: ["front", "wrist"])
    render_height: int = 64
    render_width: int = 64
    # LeRobot's follower-arm safety cap on |target - present| per step, one value or one per motor.
    max_relative_target: float | dict[str, float] | None = None
    # Stands for the calibration file matching the motors; connect(calibrate=True) "calibrates".
    calibrated: bool = True
    # List the motor observation features in reverse, so that mapping by position instead of name shows.
    reverse_motor_order: bool = False
    # Stands for a camera's frame wait: each get_observation sleeps this long before it returns.
    camera_latency_s: float = 0.0
    # As LeRobot's followers: switch the motors' torque off on disconnect (the arm goes limp).
    disable_torque_on_disconnect: bool = True


class VivarlSimArm(Robot):
    config_class = VivarlSimArmConfig
    name = SIM_ROBOT_TYPE

    def __init__(self, config: VivarlSimArmConfig) -> None:
        super().__init__(config)
        self.config = config
        self.sim = BoxAssemblySim(
            SimBoxConfig(
                cameras=list(config.sim_cameras),
                image_height=config.render_height,
                image_width=config.render_width,
            )
        )
        self.joints = tuple(self.sim.spec.action_names)
        self._calibrated = config.calibrated
        self._connected = False
        # What reached the "hardware": tests count reads and writes per control step.
        self.reads = self.writes = self.connects = 0
        # Injected faults: the next this-many reads (writes) raise like a serial bus that lost a status packet;
        # fail_connects makes that many connects fail too.
        self.fail_reads = self.fail_writes = self.fail_connects = 0
        # Per disconnect: whether the torque went off with it.
        self.torque_dropped: list[bool] = []

    @property
    def observation_features(self) -> dict[str, Any]:
        motors = [f"{joint}.pos" for joint in self.joints]
        if self.config.reverse_motor_order:
            motors.reverse()
        cameras = {
            name: (self.config.render_height, self.config.render_width, 3) for name in self.config.sim_cameras
        }
        return {**dict.fromkeys(motors, float), **cameras}

    @property
    def action_features(self) -> dict[str, type]:
        return {f"{joint}.pos": float for joint in self.joints}

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self, calibrate: bool = True) -> None:
        if self._connected:
            raise DeviceAlreadyConnectedError(f"{self} is already connected")
        if self.fail_connects > 0:
            self.fail_connects -= 1
            raise ConnectionError(f"Could not connect on port '/dev/ttyVIVARL' ({self})")
        self.connects += 1
        self.sim.connect()
        if self.sim._task is None:
            self.sim.start_episode(seed=0)
        if calibrate and not self._calibrated:
            self.calibrate()
        self._connected = True

    @property
    def is_calibrated(self) -> bool:
        return self._calibrated

    def calibrate(self) -> None:
        self._calibrated = True

    def configure(self) -> None:
        """The simulator has no motor registers to configure."""

    def present_positions(self) -> dict[str, float]:
        return {joint: float(value) for joint, value in zip(self.joints, self.sim.hold_action(), strict=True)}

    def get_observation(self) -> dict[str, Any]:
        self._require_connected()
        self.reads += 1
        if self.fail_reads > 0:
            self.fail_reads -= 1
            raise RuntimeError(
                "Failed to sync read 'Present_Position' on ids=[1, 2, 3]: [TxRxResult] There is no status packet!"
            )
        if self.config.camera_latency_s > 0:
            time.sleep(self.config.camera_latency_s)
        observation = self.sim.get_observation()
        reading: dict[str, Any] = {f"{joint}.pos": value for joint, value in self.present_positions().items()}
        reading.update({name: observation.images[name] for name in self.config.sim_cameras})
        return reading

    def send_action(self, action: dict[str, Any]) -> dict[str, Any]:
        self._require_connected()
        self.writes += 1
        if self.fail_writes > 0:
            self.fail_writes -= 1
            raise RuntimeError("Failed to sync write 'Goal_Position': [TxRxResult] Incorrect status packet!")
        goal = {
            key.removesuffix(".pos"): float(value) for key, value in action.items() if key.endswith(".pos")
        }
        present = self.present_positions()
        if self.config.max_relative_target is not None:
            goal_present = {joint: (target, present[joint]) for joint, target in goal.items()}
            goal = ensure_safe_goal_position(goal_present, self.config.max_relative_target)
        # Like a motor bus write, joints left out of the action keep their present position.
        targets = np.array([goal.get(joint, present[joint]) for joint in self.joints], dtype=np.float32)
        applied = self.sim.send_action(targets)
        return {f"{joint}.pos": float(value) for joint, value in zip(self.joints, applied, strict=True)}

    def disconnect(self) -> None:
        self._require_connected()
        self.torque_dropped.append(self.config.disable_torque_on_disconnect)
        self.sim.disconnect()
        self._connected = False

    def _require_connected(self) -> None:
        if not self._connected:
            raise DeviceNotConnectedError(f"{self} is not connected")


@TeleoperatorConfig.register_subclass(LEADER_TYPE)
@dataclass
class VivarlTestLeaderConfig(TeleoperatorConfig):
    joints: list[str] = field(default_factory=lambda: ["x", "y", "z"])
    calibrated: bool = True


class VivarlTestLeader(Teleoperator):
    config_class = VivarlTestLeaderConfig
    name = LEADER_TYPE

    def __init__(self, config: VivarlTestLeaderConfig) -> None:
        super().__init__(config)
        self.config = config
        # Where the operator holds the leader; tests move it by assigning entries.
        self.pose = {f"{joint}.pos": 0.0 for joint in config.joints}
        self._connected = False

    @property
    def action_features(self) -> dict[str, type]:
        return dict.fromkeys(self.pose, float)

    @property
    def feedback_features(self) -> dict[str, type]:
        return {}

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self, calibrate: bool = True) -> None:
        self._connected = True

    @property
    def is_calibrated(self) -> bool:
        return self.config.calibrated

    def calibrate(self) -> None:
        self.config.calibrated = True

    def configure(self) -> None:
        """A test leader has no motors to configure."""

    def get_action(self) -> dict[str, float]:
        if not self._connected:
            raise DeviceNotConnectedError(f"{self} is not connected")
        return dict(self.pose)

    def send_feedback(self, feedback: dict[str, Any]) -> None:
        """A leader arm without force feedback ignores it."""

    def disconnect(self) -> None:
        self._connected = False


@TeleoperatorConfig.register_subclass(PEDAL_LEADER_TYPE)
@dataclass
class VivarlTestPedalLeaderConfig(VivarlTestLeaderConfig):
    pass


class VivarlTestPedalLeader(VivarlTestLeader):
    config_class = VivarlTestPedalLeaderConfig
    name = PEDAL_LEADER_TYPE

    def __init__(self, config: VivarlTestPedalLeaderConfig) -> None:
        super().__init__(config)
        self.pedal_down = False

    def get_teleop_events(self) -> dict[TeleopEvents, bool]:
        return {
            TeleopEvents.IS_INTERVENTION: self.pedal_down,
            TeleopEvents.TERMINATE_EPISODE: False,
            TeleopEvents.SUCCESS: False,
            TeleopEvents.RERECORD_EPISODE: False,
        }
