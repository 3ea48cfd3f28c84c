"""Real arms through LeRobot: any ``lerobot.robots.Robot`` behind vivarl's Robot protocol, and human takeover
through a LeRobot teleoperator.

LeRobot keeps what it owns: the motor drivers, the calibration files (made by ``lerobot-calibrate``, never here)
and its own per-step clip (``max_relative_target``). This module only maps between LeRobot's flat feature dicts
(``"shoulder_pan.pos": float``, ``"front": (H, W, 3)`` uint8 image) and vivarl's vectors and resized images, and
refuses to build a real arm without configured position limits. lerobot is imported inside functions only, so
importing robot_io never pulls in LeRobot (and torch).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import pkgutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import Any

import numpy as np

from robot_io.config import LeRobotArmConfig
from robot_io.images import letterbox
from robot_io.spec import ActionError, CameraSpec, Observation, RobotError, RobotSpec, as_action

logger = logging.getLogger(__name__)

# The value of lerobot's ``TeleopEvents.IS_INTERVENTION``; matched by value so plain-string keys work too.
_INTERVENTION_EVENT = "is_intervention"


# -- building LeRobot configs ---------------------------------------------------------------------------------
@functools.cache
def _register_lerobot_devices(package_name: str) -> None:
    """Import LeRobot's in-tree device packages and installed plugins so that their configs are registered.

    A config class joins its ChoiceRegistry only when its module is imported (LeRobot's own CLIs import every
    device package up front for this reason). Packages whose optional SDK is missing are skipped.
    """
    from lerobot.utils.import_utils import register_third_party_plugins

    package = importlib.import_module(package_name)
    for module in pkgutil.iter_modules(package.__path__):
        if not module.ispkg:
            continue
        try:
            importlib.import_module(f"{package_name}.{module.name}")
        except ImportError as exc:
            logger.debug("LeRobot package %s.%s not importable: %s", package_name, module.name, exc)
    register_third_party_plugins()


def _import_modules(names: Sequence[str]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ValueError(
                f"lerobot.import_modules names {name!r}, which cannot be imported ({exc}); put its folder on "
                "PYTHONPATH on every node that drives the arm"
            ) from exc


def _config_class(registry: Any, type_name: str, package_name: str, field_name: str) -> type:
    if type_name not in registry.get_known_choices():
        _register_lerobot_devices(package_name)
    known = registry.get_known_choices()
    if type_name not in known:
        raise ValueError(
            f"unknown LeRobot type '{type_name}' in lerobot.{field_name}; known types: {sorted(known)}"
        )
    return registry.get_choice_class(type_name)


def _plain(value: Any) -> Any:
    """Plain dicts and lists from any mapping or sequence (Hydra hands over DictConfig and ListConfig)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(item) for item in value]
    return value


def _decode_config(config_class: type, kwargs: Mapping, type_name: str, field_name: str) -> Any:
    """Build a LeRobot config from plain kwargs the way LeRobot's CLIs do, through draccus: camera dicts become
    CameraConfig objects chosen by their ``type``, and numbers and paths are coerced to the annotated types
    (``max_relative_target: 5`` must arrive as a float, ``calibration_dir`` as a Path)."""
    import draccus

    _register_lerobot_devices("lerobot.cameras")
    try:
        return draccus.decode(config_class, _plain(kwargs))
    except (draccus.ParsingError, TypeError, ValueError) as exc:
        accepted = [f.name for f in fields(config_class) if f.init]
        raise ValueError(
            f"lerobot.{field_name} do not fit {config_class.__name__} (type '{type_name}'): {exc}\n"
            f"accepted keys: {accepted}"
        ) from exc


def _calibrate_command(kind: str, type_name: str, kwargs: Mapping) -> str:
    words = [f"lerobot-calibrate --{kind}.type={type_name}"]
    words += [f"--{kind}.{key}={kwargs[key]}" for key in ("port", "id", "calibration_dir") if kwargs.get(key)]
    return " ".join(words)


def _is_scalar_feature(feature: Any) -> bool:
    return feature is float or feature is int


def _is_image_feature(feature: Any) -> bool:
    return isinstance(feature, tuple) and len(feature) == 3 and feature[2] == 3


def _arm_spec(
    config: LeRobotArmConfig,
    camera_names: tuple[str, ...],
    state_names: tuple[str, ...],
    action_names: tuple[str, ...],
) -> RobotSpec:
    n = len(action_names)
    # LeRobot's own clip is relative to the present position only, so absolute limits must come from the config.
    for field_name in ("action_low", "action_high"):
        values = getattr(config, field_name)
        if len(values) != n:
            raise ValueError(
                f"lerobot.{field_name} needs {n} values, one per action {list(action_names)} in the robot's "
                f"units, got {len(values)}: a real arm is never driven without position limits"
            )
    if config.max_action_delta and len(config.max_action_delta) != n:
        raise ValueError(
            f"lerobot.max_action_delta needs {n} values (one per action {list(action_names)}) or none, "
            f"got {len(config.max_action_delta)}"
        )
    try:
        return RobotSpec(
            cameras=tuple(CameraSpec(name, config.image_height, config.image_width) for name in camera_names),
            state_names=state_names,
            action_names=action_names,
            action_low=np.asarray(config.action_low, dtype=np.float32),
            action_high=np.asarray(config.action_high, dtype=np.float32),
            control_hz=config.control_hz,
            max_action_delta=np.asarray(config.max_action_delta) if config.max_action_delta else None,
        )
    except ValueError as exc:
        raise ValueError(f"lerobot arm config '{config.robot_type}': {exc}") from exc


def _build_device(factory: Callable[[Any], Any], device_config: Any, kind: str, type_name: str) -> Any:
    try:
        return factory(device_config)
    except ImportError as exc:
        # LeRobot ships motor and gamepad SDKs as extras (feetech, dynamixel, gamepad), imported only here.
        raise ValueError(
            f"LeRobot could not build {kind} '{type_name}': module '{exc.name}' is missing; install the LeRobot "
            f"extra for its hardware (e.g. feetech-servo-sdk for SO-100/101, dynamixel-sdk for Koch)"
        ) from exc
    except (TypeError, ValueError) as exc:
        raise ValueError(f"LeRobot could not build {kind} '{type_name}': {exc}") from exc


def make_lerobot_robot(config: LeRobotArmConfig) -> LeRobotArm:
    """LeRobot's robot for ``config.robot_type``, built from ``config.robot_kwargs``, wrapped, not connected."""
    from lerobot.robots import RobotConfig, make_robot_from_config

    _import_modules(config.import_modules)
    config_class = _config_class(RobotConfig, config.robot_type, "lerobot.robots", "robot_type")
    robot_config = _decode_config(config_class, config.robot_kwargs, config.robot_type, "robot_kwargs")
    return LeRobotArm(_build_device(make_robot_from_config, robot_config, "robot", config.robot_type), config)


# -- the arm ---------------------------------------------------------------------------------------------------
class LeRobotArm:
    """vivarl's Robot around any LeRobot robot whose actions are absolute targets that it also measures.

    State is every scalar observation feature in the robot's own order (joint positions, plus velocities where a
    robot reports them); images are its RGB camera features resized to the configured size; actions are its
    action features, by name. Observation arrays that are not HxWx3 images (e.g. depth maps) are left out.
    """

    def __init__(self, robot: Any, config: LeRobotArmConfig) -> None:
        self.robot = robot
        self.config = config
        observation_features = dict(robot.observation_features)
        action_features = dict(robot.action_features)
        self._state_names = tuple(n for n, f in observation_features.items() if _is_scalar_feature(f))
        self._camera_names = tuple(n for n, f in observation_features.items() if _is_image_feature(f))
        self._action_names = tuple(action_features)
        not_scalar = [n for n, f in action_features.items() if not _is_scalar_feature(f)]
        if not_scalar:
            raise ValueError(
                f"{self.name}: action features {not_scalar} are not scalars; vivarl sends vectors"
            )
        # Holding position means commanding the measured value, so every target must be measured too.
        unmeasured = [n for n in self._action_names if n not in self._state_names]
        if unmeasured:
            raise ValueError(
                f"{self.name}: action features {unmeasured} have no measured counterpart among the observation "
                f"features {self._state_names}; vivarl drives arms by absolute targets it can hold"
            )
        self._spec = _arm_spec(config, self._camera_names, self._state_names, self._action_names)
        # The targets measured by the last reading: what holding the arm means until the next one. On a real arm
        # a reading is every motor plus a fresh frame from every camera, so holding must not cost another one.
        self._last_measured: np.ndarray | None = None
        # Successful reconnects since construction (the actor reports them), and the backoff's sleep (tests).
        self.reconnects = 0
        self._connected_once = False
        self._sleep: Callable[[float], None] = time.sleep

    @property
    def name(self) -> str:
        return f"LeRobot '{self.config.robot_type}' robot {self.robot}"

    @property
    def spec(self) -> RobotSpec:
        return self._spec

    @property
    def is_connected(self) -> bool:
        return bool(self.robot.is_connected)

    def connect(self) -> None:
        if self.robot.is_connected:
            return
        try:
            # Calibration is interactive (move every joint through its range): it belongs to lerobot-calibrate,
            # never to an unattended run.
            self.robot.connect(calibrate=False)
        except Exception as exc:
            raise RobotError(f"could not connect {self.name}: {exc}") from exc
        if not self.robot.is_calibrated:
            _disconnect_quietly(self.robot)
            raise RobotError(
                f"{self.name} is not calibrated (no calibration file at "
                f"{getattr(self.robot, 'calibration_fpath', '?')} matching its motors). "
                f"Calibrate it with LeRobot's own tool, then start again:\n  "
                f"{_calibrate_command('robot', self.config.robot_type, self.config.robot_kwargs)}"
            )
        self._connected_once = True

    def disconnect(self) -> None:
        self._last_measured = None
        # Deliberately disconnected: not to be brought back by the next call.
        self._connected_once = False
        if not self.robot.is_connected:
            return
        try:
            self.robot.disconnect()
        except Exception as exc:
            raise RobotError(f"could not disconnect {self.name}: {exc}") from exc

    def start_episode(self, seed: int | None = None) -> Observation:
        """A real scene cannot be reset or reseeded: the episode starts wherever the arm is."""
        return self.get_observation()

    def get_observation(self) -> Observation:
        # Stamped before the read: LeRobot arms read joints first, then take each camera's latest frame.
        timestamp = time.time()
        raw = self._read()
        state = np.array([self._scalar(raw, name) for name in self._state_names], dtype=np.float32)
        images = {name: self._image(raw, name) for name in self._camera_names}
        self._last_measured = np.array(
            [self._scalar(raw, name) for name in self._action_names], dtype=np.float32
        )
        return Observation(images=images, state=state, timestamp=timestamp)

    def send_action(self, action: np.ndarray) -> np.ndarray:
        requested = as_action(action, self._spec)
        if not np.all(np.isfinite(requested)):
            raise ActionError(
                f"action must be finite for {list(self._action_names)}, got {requested.tolist()}"
            )
        command = {name: float(value) for name, value in zip(self._action_names, requested, strict=True)}
        # Never reconnect here: the target was computed for where the arm was before it was lost. The next
        # reading (the next episode's first) reconnects.
        self._require_connected(reconnect=False)
        try:
            sent = self.robot.send_action(command)
        except Exception as exc:
            # The target is not sent again after reconnecting: it was meant for where the arm was a reconnect
            # ago. The episode stops here (the stage recollects it) and the next one starts from a fresh reading.
            reconnected = self._reconnect(f"send_action failed: {exc}")
            raise RobotError(
                f"{self.name} send_action failed: {exc}"
                + ("; reconnected, the episode is stopped" if reconnected else "")
            ) from exc
        # LeRobot returns the targets it actually wrote (after max_relative_target); a key it leaves out of its
        # reply went out unaltered.
        return np.array(
            [float(sent.get(name, command[name])) for name in self._action_names], dtype=np.float32
        )

    def hold_action(self) -> np.ndarray:
        """The targets measured by the last ``get_observation`` (one control step old at most); only before the
        first reading, or after a reconnect, does it read the arm itself."""
        if self._last_measured is None:
            raw = self._read()
            self._last_measured = np.array(
                [self._scalar(raw, name) for name in self._action_names], dtype=np.float32
            )
        return self._last_measured.copy()

    def _disconnect_keeping_torque(self) -> None:
        """Disconnect for a reconnect without letting the arm go limp: LeRobot's followers switch torque off on
        disconnect (``disable_torque_on_disconnect``), which would drop a loaded arm for the whole backoff; the
        servos keep holding their last goal instead."""
        robot_config = getattr(self.robot, "config", None)
        drops_torque = bool(getattr(robot_config, "disable_torque_on_disconnect", False))
        if drops_torque:
            robot_config.disable_torque_on_disconnect = False
        try:
            _disconnect_quietly(self.robot)
        finally:
            if drops_torque:
                robot_config.disable_torque_on_disconnect = True

    def _require_connected(self, reconnect: bool = True) -> None:
        if self.robot.is_connected:
            return
        # An arm that was connected and lost (every reconnect of an earlier failure failed) is tried again at
        # each use: a replugged USB cable brings it back at the next episode rather than never.
        if reconnect and self._connected_once and self._reconnect("the arm is disconnected"):
            return
        raise RobotError(f"{self.name} is not connected: call connect() first")

    def _read(self) -> Mapping[str, Any]:
        self._require_connected()
        try:
            return self.robot.get_observation()
        except Exception as exc:
            # A reading moves nothing, so after a reconnect it is simply taken again.
            if not self._reconnect(f"get_observation failed: {exc}"):
                raise RobotError(f"{self.name} get_observation failed: {exc}") from exc
        try:
            return self.robot.get_observation()
        except Exception as exc:
            raise RobotError(f"{self.name} get_observation failed again after reconnecting: {exc}") from exc

    def _reconnect(self, why: str) -> bool:
        """Reconnect after a failed read or write, with a doubling backoff; True once connected again.

        A serial bus that lost a status packet or a USB camera that dropped out usually comes back on a fresh
        connection, and a night should not end on one glitch. Torque stays on (``_disconnect_keeping_torque``), and
        calibration is never run here (``connect`` only checks it), so a reconnect does not drop the arm or move it
        through its range.
        """
        attempts, delay = self.config.reconnect_attempts, self.config.reconnect_backoff_s
        self._last_measured = None
        for attempt in range(1, attempts + 1):
            logger.warning("%s: %s; reconnecting (attempt %d of %d)", self.name, why, attempt, attempts)
            if self.robot.is_connected:
                self._disconnect_keeping_torque()
            try:
                self.connect()
            except RobotError as exc:
                why = str(exc)
                self._sleep(delay)
                delay *= 2
                continue
            self.reconnects += 1
            return True
        return False

    def _scalar(self, raw: Mapping[str, Any], name: str) -> float:
        if name not in raw:
            raise RobotError(f"{self.name} observation lacks '{name}' (has {sorted(raw)})")
        return float(raw[name])

    def _image(self, raw: Mapping[str, Any], name: str) -> np.ndarray:
        if name not in raw:
            raise RobotError(f"{self.name} observation lacks camera '{name}' (has {sorted(raw)})")
        image = np.asarray(raw[name])
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise RobotError(f"camera '{name}' must give uint8 HxWx3 images, got {image.dtype} {image.shape}")
        return letterbox(image, self.config.image_height, self.config.image_width)


def _disconnect_quietly(device: Any) -> None:
    try:
        device.disconnect()
    except Exception:  # noqa: BLE001 - already reporting the reason the device is unusable
        logger.warning("disconnecting %s failed", device, exc_info=True)


# -- teleoperation ---------------------------------------------------------------------------------------------
def _teleop_action_names(teleop: Any) -> tuple[str, ...]:
    features = dict(teleop.action_features)
    # Gamepad-style teleops describe one vector ({"dtype", "shape", "names"}) instead of one feature per value.
    if isinstance(features.get("names"), Mapping):
        return tuple(features["names"])
    return tuple(name for name, feature in features.items() if _is_scalar_feature(feature))


def _reports_intervention(events: Mapping[Any, Any]) -> bool:
    return any(
        bool(value) for key, value in events.items() if getattr(key, "value", key) == _INTERVENTION_EVENT
    )


class LeRobotTeleop:
    """vivarl's Teleoperator around a LeRobot teleoperator whose actions are the arm's own targets, by name.

    Takeover rule (``get_action`` returns None unless the operator drives this step):

    * Teleops that report events (``get_teleop_events()``, as LeRobot's HIL-SERL gamepad and keyboard do) take
      over exactly while they report ``TeleopEvents.IS_INTERVENTION``.
    * Leader arms report a pose but no intent, so for them takeover is "grab the leader": it engages once any
      leader joint is more than ``teleop_takeover_threshold`` from the pose the leader rested in when last
      released, and hands back once the leader has stayed within the threshold of one pose for
      ``teleop_release_s`` seconds (that pose becomes the new rest pose). A threshold of 0 disables it.
    * ``set_takeover(True)`` (for a pedal or key handler) forces takeover for any teleop until set False.

    The follower may be far from the leader when takeover starts: the safety layer's rate limit (and LeRobot's
    max_relative_target) walks it there over several steps rather than jumping.
    """

    def __init__(
        self,
        teleop: Any,
        config: LeRobotArmConfig,
        action_names: Sequence[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.teleop = teleop
        self.config = config
        produced = _teleop_action_names(teleop)
        self.action_names = tuple(action_names) if action_names is not None else produced
        missing = [name for name in self.action_names if name not in produced]
        if missing or not self.action_names:
            raise ValueError(
                f"LeRobot teleop '{config.teleop_type}' produces {list(produced)}, but the arm takes "
                f"{list(self.action_names)}: takeover needs a teleop whose actions are the arm's own joint "
                f"targets (a leader arm with the same joints)"
            )
        if config.teleop_takeover_threshold < 0 or config.teleop_release_s < 0:
            raise ValueError("lerobot.teleop_takeover_threshold and lerobot.teleop_release_s must be >= 0")
        self._reports_events = callable(getattr(teleop, "get_teleop_events", None))
        self._clock = clock
        self._forced = threading.Event()
        self._reset_takeover()

    def set_takeover(self, active: bool) -> None:
        """Force takeover on or off from another thread (a pedal or key handler)."""
        if active:
            self._forced.set()
        else:
            self._forced.clear()

    def connect(self) -> None:
        if self.teleop.is_connected:
            return
        try:
            if "calibrate" in inspect.signature(self.teleop.connect).parameters:
                self.teleop.connect(calibrate=False)
            else:
                self.teleop.connect()  # gamepads and keyboards have nothing to calibrate
        except Exception as exc:
            raise RobotError(f"could not connect LeRobot teleop '{self.config.teleop_type}': {exc}") from exc
        if not self.teleop.is_calibrated:
            _disconnect_quietly(self.teleop)
            raise RobotError(
                f"LeRobot teleop '{self.config.teleop_type}' ({self.teleop}) is not calibrated. Calibrate it "
                f"with LeRobot's own tool, then start again:\n  "
                f"{_calibrate_command('teleop', self.config.teleop_type, self.config.teleop_kwargs)}"
            )
        self._reset_takeover()

    def disconnect(self) -> None:
        if self.teleop.is_connected:
            self.teleop.disconnect()

    def get_action(self, observation: Observation) -> np.ndarray | None:
        pose, events = self._read()
        operator_signal = _reports_intervention(events) if events is not None else self._leader_grabbed(pose)
        return pose if operator_signal or self._forced.is_set() else None

    def leader_pose(self) -> np.ndarray:
        """The leader's pose as the arm's action, whatever the takeover rule says (a demonstration: the operator
        drives every step). The rest pose is forgotten, so that the next rollout's takeover rule starts from
        wherever the demonstration left the leader rather than reading that as a grab."""
        pose, _ = self._read()
        self._reset_takeover()
        return pose

    def _read(self) -> tuple[np.ndarray, Mapping[Any, Any] | None]:
        try:
            raw = self.teleop.get_action()
            events = self.teleop.get_teleop_events() if self._reports_events else None
        except Exception as exc:
            raise RobotError(f"LeRobot teleop '{self.config.teleop_type}' failed: {exc}") from exc
        missing = [name for name in self.action_names if name not in raw]
        if missing:
            raise RobotError(f"LeRobot teleop '{self.config.teleop_type}' action lacks {missing}")
        return np.array([float(raw[name]) for name in self.action_names], dtype=np.float32), events

    def _reset_takeover(self) -> None:
        self._grabbed = False
        self._rest_pose: np.ndarray | None = None
        self._still_pose: np.ndarray | None = None
        self._still_since = 0.0

    def _leader_grabbed(self, pose: np.ndarray) -> bool:
        threshold = self.config.teleop_takeover_threshold
        if threshold <= 0:
            return False
        now = self._clock()
        if self._rest_pose is None or self._still_pose is None:
            self._rest_pose, self._still_pose, self._still_since = pose, pose, now
            return False
        if np.max(np.abs(pose - self._still_pose)) > threshold:
            self._still_pose, self._still_since = pose, now
        if not self._grabbed:
            self._grabbed = bool(np.max(np.abs(pose - self._rest_pose)) > threshold)
        elif now - self._still_since >= self.config.teleop_release_s:
            self._grabbed, self._rest_pose = False, pose
        return self._grabbed


class LeaderDemonstrator:
    """The corrector's leader arm recording demonstrations: it drives every step of a demo episode (the operator
    starts it with the console's "reset done" and ends it with "end episode"). It shares the corrector's device,
    which the corrector connects and disconnects."""

    def __init__(self, leader: LeRobotTeleop) -> None:
        self.leader = leader

    def connect(self) -> None:
        self.leader.connect()

    def disconnect(self) -> None:
        pass

    def get_action(self, observation: Observation) -> np.ndarray:
        return self.leader.leader_pose()


def make_lerobot_teleop(
    config: LeRobotArmConfig, action_names: Sequence[str] | None = None
) -> LeRobotTeleop | None:
    """The configured LeRobot teleoperator (not connected), or None when ``config.teleop_type`` is empty.

    Pass the arm's ``spec.action_names`` so the teleop's values come out in the arm's order; without them the
    teleop's own feature order is used.
    """
    if not config.teleop_type:
        return None
    from lerobot.teleoperators import TeleoperatorConfig, make_teleoperator_from_config

    _import_modules(config.import_modules)
    config_class = _config_class(
        TeleoperatorConfig, config.teleop_type, "lerobot.teleoperators", "teleop_type"
    )
    teleop_config = _decode_config(config_class, config.teleop_kwargs, config.teleop_type, "teleop_kwargs")
    teleop = _build_device(make_teleoperator_from_config, teleop_config, "teleop", config.teleop_type)
    return LeRobotTeleop(teleop, config, action_names)
