"""What a robot looks like from the outside: its spec, one observation, and checks on both.

These types are the contract between robot_io and everything downstream (actors write them to replay, learners
read them back). They are plain dataclasses over numpy so that no consumer needs torch, Ray or MuJoCo to use them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


class RobotError(RuntimeError):
    """A robot could not do what was asked (not connected, link down, hardware fault)."""


class ActionError(ValueError):
    """An action has the wrong shape or type for the robot's spec."""


@dataclass(frozen=True)
class CameraSpec:
    name: str
    height: int
    width: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, 3)


@dataclass(frozen=True)
class RobotSpec:
    """Everything a policy, a safety layer or a replay store needs to know about an arm.

    Actions are absolute targets (joint positions for LeRobot arms, an end-effector pose and gripper opening for
    the simulator), so "hold position" is always well defined: command the current measured position.
    """

    cameras: tuple[CameraSpec, ...]
    state_names: tuple[str, ...]
    action_names: tuple[str, ...]
    action_low: np.ndarray
    action_high: np.ndarray
    control_hz: float
    # Largest change of each action dimension between two consecutive control steps.
    max_action_delta: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.action_names)
        low = np.asarray(self.action_low, dtype=np.float32)
        high = np.asarray(self.action_high, dtype=np.float32)
        if low.shape != (n,) or high.shape != (n,):
            raise ValueError(
                f"action limits must have one entry per action name ({n}); got low {low.shape}, high {high.shape}"
            )
        if not np.all(low < high):
            bad = [self.action_names[i] for i in np.flatnonzero(~(low < high))]
            raise ValueError(f"action_low must be below action_high for every dimension; not so for {bad}")
        object.__setattr__(self, "action_low", low)
        object.__setattr__(self, "action_high", high)
        if self.max_action_delta is not None:
            delta = np.asarray(self.max_action_delta, dtype=np.float32)
            if delta.shape != (n,) or not np.all(delta > 0):
                raise ValueError(f"max_action_delta must be {n} positive numbers, got {delta}")
            object.__setattr__(self, "max_action_delta", delta)
        if self.control_hz <= 0:
            raise ValueError(f"control_hz must be positive, got {self.control_hz}")
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"camera names must be unique, got {names}")

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    def to_dict(self) -> dict:
        """A msgpack/JSON-friendly form (used by the bridge and stored beside replay data)."""
        return {
            "cameras": [{"name": c.name, "height": c.height, "width": c.width} for c in self.cameras],
            "state_names": list(self.state_names),
            "action_names": list(self.action_names),
            "action_low": self.action_low.tolist(),
            "action_high": self.action_high.tolist(),
            "control_hz": float(self.control_hz),
            "max_action_delta": None if self.max_action_delta is None else self.max_action_delta.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> RobotSpec:
        return cls(
            cameras=tuple(CameraSpec(c["name"], int(c["height"]), int(c["width"])) for c in d["cameras"]),
            state_names=tuple(d["state_names"]),
            action_names=tuple(d["action_names"]),
            action_low=np.asarray(d["action_low"], dtype=np.float32),
            action_high=np.asarray(d["action_high"], dtype=np.float32),
            control_hz=float(d["control_hz"]),
            max_action_delta=None if d.get("max_action_delta") is None else np.asarray(d["max_action_delta"]),
        )


@dataclass
class Observation:
    """One reading of the arm.

    ``info`` carries ground truth that only some sources have (the simulator fills ``progress`` in [0, 1],
    ``stage``, ``success`` and ``failed``); a real arm leaves it empty.
    """

    images: dict[str, np.ndarray]
    state: np.ndarray
    timestamp: float
    info: dict[str, float] = field(default_factory=dict)


def validate_observation(obs: Observation, spec: RobotSpec) -> None:
    """Raise a RobotError naming the first way ``obs`` disagrees with ``spec``."""
    for cam in spec.cameras:
        img = obs.images.get(cam.name)
        if img is None:
            raise RobotError(f"observation has no image for camera '{cam.name}' (has {sorted(obs.images)})")
        if img.dtype != np.uint8 or img.shape != cam.shape:
            raise RobotError(
                f"camera '{cam.name}' image must be uint8 {cam.shape}, got {img.dtype} {tuple(img.shape)}"
            )
    if obs.state.dtype != np.float32 or obs.state.shape != (spec.state_dim,):
        raise RobotError(
            f"state must be float32 ({spec.state_dim},) for {list(spec.state_names)}, "
            f"got {obs.state.dtype} {tuple(obs.state.shape)}"
        )


def as_action(action: Sequence[float] | np.ndarray, spec: RobotSpec) -> np.ndarray:
    """Coerce ``action`` to a float32 vector of the spec's length, or raise ActionError saying what is wrong."""
    try:
        arr = np.asarray(action, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ActionError(f"action must be a sequence of {spec.action_dim} numbers: {exc}") from exc
    if arr.shape != (spec.action_dim,):
        raise ActionError(
            f"action must have shape ({spec.action_dim},) for {list(spec.action_names)}, got {arr.shape}"
        )
    return arr
