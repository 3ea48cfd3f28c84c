"""The one interface through which actors reach every arm: simulated, LeRobot-driven, or across the bridge."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from robot_io.spec import Observation, RobotSpec


@runtime_checkable
class Robot(Protocol):
    """An arm with cameras. Implementations: the MuJoCo simulator, the LeRobot adapter, the bridge client.

    Actions are absolute targets in the spec's units. ``send_action`` returns what was actually applied, which
    may differ from the request after clipping, so callers record the returned action, never the request.
    """

    @property
    def spec(self) -> RobotSpec: ...

    @property
    def is_connected(self) -> bool: ...

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def start_episode(self, seed: int | None = None) -> Observation:
        """Bring the scene to the start of a new episode (reset in simulation) and return the first reading."""
        ...

    def get_observation(self) -> Observation: ...

    def send_action(self, action: np.ndarray) -> np.ndarray: ...

    def hold_action(self) -> np.ndarray:
        """The action that keeps the arm where it is (its measured position as a target), from the last
        ``get_observation``: holding must not cost a hardware read (on a real arm that is every motor and a
        fresh frame from every camera). Only before the first reading may it read the arm itself."""
        ...


@runtime_checkable
class Teleoperator(Protocol):
    """A human (leader arm, gamepad) or, in simulation, the scripted expert standing in for one.

    ``get_action`` returns None while the operator is not taking over, and an absolute action otherwise.
    """

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def get_action(self, observation: Observation) -> np.ndarray | None: ...


def hold_if_nonfinite(action: np.ndarray, hold: np.ndarray) -> tuple[np.ndarray, bool]:
    """Replace an action containing NaN or inf by ``hold``; report whether it was refused."""
    if np.all(np.isfinite(action)):
        return action, False
    return hold.astype(np.float32, copy=True), True
