"""Small in-memory stand-ins for an arm and a human operator, for tests that must not need the simulator.

``FakeArm`` is a Robot with two cameras whose position is whatever it was last commanded; it records every action
it receives and every observation it hands out, so a test can check exactly what reached the "hardware".
"""

from __future__ import annotations

import threading
import time

import numpy as np

from robot_io.spec import CameraSpec, Observation, RobotError, RobotSpec


class FakeArm:
    """A three-dimensional arm (x, y, gripper) with ``cameras`` rendering smooth, seed-dependent images."""

    def __init__(
        self, cameras: tuple[str, ...] = ("front", "wrist"), height: int = 64, width: int = 64
    ) -> None:
        self._spec = RobotSpec(
            cameras=tuple(CameraSpec(name, height, width) for name in cameras),
            state_names=("x", "y", "gripper"),
            action_names=("x", "y", "gripper"),
            action_low=np.array([-1.0, -1.0, 0.0]),
            action_high=np.array([1.0, 1.0, 1.0]),
            control_hz=10.0,
        )
        self.position = np.zeros(3, dtype=np.float32)
        self.actions: list[np.ndarray] = []
        self.observations: list[Observation] = []
        self.episodes: list[int | None] = []
        self.connected = False
        self._step = 0
        self._offset = 0
        self._lock = threading.Lock()

    @property
    def spec(self) -> RobotSpec:
        return self._spec

    @property
    def is_connected(self) -> bool:
        return self.connected

    def connect(self) -> None:
        self.connected = True

    def disconnect(self) -> None:
        self.connected = False

    def start_episode(self, seed: int | None = None) -> Observation:
        with self._lock:
            self.episodes.append(seed)
            self._offset = int(np.random.default_rng(seed).integers(0, 256))
            self._step = 0
            self.position = np.zeros(3, dtype=np.float32)
        return self.get_observation()

    def get_observation(self) -> Observation:
        if not self.connected:
            raise RobotError("fake arm is not connected")
        with self._lock:
            self._step += 1
            images = {cam.name: self._render(cam, i) for i, cam in enumerate(self._spec.cameras)}
            obs = Observation(
                images=images,
                state=self.position.copy(),
                timestamp=time.time(),
                info={"step": float(self._step)},
            )
            self.observations.append(obs)
            return obs

    def send_action(self, action: np.ndarray) -> np.ndarray:
        if not self.connected:
            raise RobotError("fake arm is not connected")
        with self._lock:
            applied = np.asarray(action, dtype=np.float32).copy()
            self.actions.append(applied)
            self.position = applied.copy()
            return applied.copy()

    def hold_action(self) -> np.ndarray:
        with self._lock:
            return self.position.copy()

    def _render(self, cam: CameraSpec, index: int) -> np.ndarray:
        # Smooth gradients, like camera images and unlike noise, so that JPEG has something realistic to compress.
        rows = np.linspace(0, 160, cam.height, dtype=np.float32)[:, None]
        cols = np.linspace(0, 80, cam.width, dtype=np.float32)[None, :]
        base = (rows + cols) * 0.6 + (self._offset + 7 * self._step) % 64 + 20 * index
        return np.stack([base, base * 0.5 + 30, 255 - base * 0.7], axis=-1).astype(np.uint8)


class FakeOperator:
    """A Teleoperator that takes over (returns ``action``) only while ``engaged``; records what it was shown."""

    def __init__(self, action: np.ndarray) -> None:
        self.action = np.asarray(action, dtype=np.float32)
        self.engaged = False
        self.connected = False
        self.seen: list[Observation] = []

    def connect(self) -> None:
        self.connected = True

    def disconnect(self) -> None:
        self.connected = False

    def get_action(self, observation: Observation) -> np.ndarray | None:
        self.seen.append(observation)
        return self.action.copy() if self.engaged else None
