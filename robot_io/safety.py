"""The safety layer that wraps every robot, real or simulated.

It is the last code between a policy and an arm, so it trusts nothing: actions are clamped to the configured
position limits, rate-limited per step, refused (arm holds) when not finite, and a watchdog holds the arm when no
action arrives in time. A control step costs the arm exactly its own ``get_observation`` and ``send_action``:
holding re-sends the last applied target during an episode (never the measured position, under which a loaded
servo sinks), and every Robot answers ``hold_action`` from its last reading rather than by reading again. Every intervention is counted in ``SafetyStats`` so that actors can log and record it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass

import numpy as np

from robot_io.robot import Robot
from robot_io.spec import Observation, RobotError, RobotSpec, as_action


@dataclass
class SafetyConfig:
    """Limits applied on top of the robot's own spec. Empty lists mean "use the spec's values"."""

    # Per-dimension lower/upper bound on commanded targets; may only tighten the robot's spec.
    position_low: list[float] | None = None
    position_high: list[float] | None = None
    # Largest change of each action dimension from one command to the next.
    max_delta: list[float] | None = None
    # Hold the arm when no action arrived for this long during an episode (seconds, 0 disables).
    watchdog_timeout_s: float = 0.5


@dataclass
class SafetyStats:
    clamped: int = 0
    rate_limited: int = 0
    refused_nonfinite: int = 0
    watchdog_holds: int = 0

    def total(self) -> int:
        return self.clamped + self.rate_limited + self.refused_nonfinite + self.watchdog_holds

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _resolve_limits(spec: RobotSpec, cfg: SafetyConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    low, high = spec.action_low.copy(), spec.action_high.copy()
    for name, values, is_low in (
        ("position_low", cfg.position_low, True),
        ("position_high", cfg.position_high, False),
    ):
        if values is None:
            continue
        arr = np.asarray(values, dtype=np.float32)
        if arr.shape != (spec.action_dim,):
            raise ValueError(
                f"safety.{name} needs {spec.action_dim} values for {list(spec.action_names)}, got {len(arr)}"
            )
        # Configured limits may only tighten the hardware's: a typo must never widen what the arm can reach.
        low = np.maximum(low, arr) if is_low else low
        high = np.minimum(high, arr) if not is_low else high
    if not np.all(low <= high):
        raise ValueError(f"safety limits leave no valid action: low {low.tolist()} > high {high.tolist()}")
    delta = spec.max_action_delta
    if cfg.max_delta is not None:
        arr = np.asarray(cfg.max_delta, dtype=np.float32)
        if arr.shape != (spec.action_dim,) or not np.all(arr > 0):
            raise ValueError(f"safety.max_delta needs {spec.action_dim} positive values, got {cfg.max_delta}")
        delta = arr if delta is None else np.minimum(delta, arr)
    return low, high, delta


class SafeRobot:
    """A Robot that enforces ``SafetyConfig`` on another Robot. It is itself a Robot."""

    def __init__(self, robot: Robot, config: SafetyConfig | None = None) -> None:
        self.inner = robot
        self.config = config or SafetyConfig()
        if self.config.watchdog_timeout_s < 0:
            raise ValueError(f"safety.watchdog_timeout_s must be >= 0, got {self.config.watchdog_timeout_s}")
        self.stats = SafetyStats()
        self._low: np.ndarray | None = None
        self._high: np.ndarray | None = None
        self._delta: np.ndarray | None = None
        self._last_command: np.ndarray | None = None
        # One lock serialises every call into the inner robot: the watchdog thread and the control loop both send.
        self._lock = threading.RLock()
        self._last_action_time = time.monotonic()
        self._episode_active = False
        self._watchdog_fired = False
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None

    # -- Robot protocol -------------------------------------------------------------------------------------
    @property
    def spec(self) -> RobotSpec:
        return self.inner.spec

    @property
    def is_connected(self) -> bool:
        return self.inner.is_connected

    def connect(self) -> None:
        with self._lock:
            self.inner.connect()
            self._low, self._high, self._delta = _resolve_limits(self.inner.spec, self.config)
        if self.config.watchdog_timeout_s > 0 and self._watchdog is None:
            self._stop.clear()
            self._watchdog = threading.Thread(target=self._watch, name="vivarl-safety-watchdog", daemon=True)
            self._watchdog.start()

    def disconnect(self) -> None:
        self._stop.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=2.0)
            self._watchdog = None
        with self._lock:
            self._episode_active = False
            self.inner.disconnect()

    def start_episode(self, seed: int | None = None) -> Observation:
        with self._lock:
            obs = self.inner.start_episode(seed)
            # Within the limits from the first hold on: an arm resting outside tightened limits is held at them.
            self._last_command = None
            self._last_command = self._make_safe(self.inner.hold_action().astype(np.float32), count=False)
            self._last_action_time = time.monotonic()
            self._watchdog_fired = False
            self._episode_active = True
            return obs

    def end_episode(self) -> None:
        """Stop watching for stale commands (between episodes the arm is deliberately idle)."""
        with self._lock:
            self._episode_active = False
            # A bridge client tells its server too, so the far side stops its own stale-command hold.
            end_inner = getattr(self.inner, "end_episode", None)
            if end_inner is not None:
                end_inner()

    def get_observation(self) -> Observation:
        with self._lock:
            return self.inner.get_observation()

    def hold_action(self) -> np.ndarray:
        """During an episode, the target last applied: a servo under gravity measures a little below its target,
        so commanding the measured position step after step would let the arm sink, and a reading older than the
        last command would pull it back. Between episodes (and before the first command), the measured position."""
        with self._lock:
            if self._episode_active and self._last_command is not None:
                return self._last_command.copy()
            return self._make_safe(self.inner.hold_action().astype(np.float32), count=False)

    def send_action(self, action: np.ndarray) -> np.ndarray:
        if self._low is None:
            raise RobotError("robot is not connected: call connect() before send_action()")
        requested = as_action(action, self.spec)
        with self._lock:
            self._last_action_time = time.monotonic()
            self._watchdog_fired = False
            refused = not np.all(np.isfinite(requested))
            if refused:
                # Holding costs no read: the last applied target, else the inner robot's last reading.
                requested = self.hold_action()
                self.stats.refused_nonfinite += 1
            safe = self._make_safe(requested, count=not refused)
            applied = self.inner.send_action(safe)
            self._last_command = np.asarray(applied, dtype=np.float32)
            return self._last_command.copy()

    # -- internals ------------------------------------------------------------------------------------------
    def _make_safe(self, action: np.ndarray, count: bool) -> np.ndarray:
        clamped = np.clip(action, self._low, self._high)
        if count and not np.array_equal(clamped, action):
            self.stats.clamped += 1
        if self._delta is not None and self._last_command is not None:
            limited = np.clip(clamped, self._last_command - self._delta, self._last_command + self._delta)
            # Rate limiting must not push the target back out of the position limits.
            limited = np.clip(limited, self._low, self._high)
            if count and not np.array_equal(limited, clamped):
                self.stats.rate_limited += 1
            clamped = limited
        return clamped.astype(np.float32)

    def _watch(self) -> None:
        timeout = self.config.watchdog_timeout_s
        while not self._stop.wait(timeout / 4):
            with self._lock:
                stale = time.monotonic() - self._last_action_time > timeout
                if not (self._episode_active and stale and not self._watchdog_fired):
                    continue
                try:
                    hold = self.hold_action()
                    self._last_command = np.asarray(self.inner.send_action(hold), dtype=np.float32)
                except Exception:  # noqa: BLE001 - the watchdog must survive a flaky link; the next action will raise
                    continue
                self.stats.watchdog_holds += 1
                self._watchdog_fired = True

    def __enter__(self) -> SafeRobot:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()
