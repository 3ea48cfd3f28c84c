"""``BoxAssemblyEnv``: the box-assembly simulator as a gymnasium environment (for off-the-shelf RL tooling).

Observations are ``{"state": float32 (9,), "images": {camera: uint8 (H, W, 3)}}``; actions are the simulator's
absolute targets ``[ee_x, ee_y, ee_z, ee_yaw, gripper_opening]``. The reward is the change in ground-truth progress
(so an episode's return is its final progress minus its first), ``terminated`` means success and ``truncated`` the
time limit. ``info`` carries the simulator's info plus the action actually applied after clipping.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from robot_io.config import SimBoxConfig
from robot_io.sim.box_sim import BoxAssemblySim
from robot_io.spec import Observation


class BoxAssemblyEnv(gymnasium.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, config: SimBoxConfig | None = None, render_mode: str | None = None) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.sim = BoxAssemblySim(config)
        self.sim.connect()
        spec = self.sim.spec
        self.metadata = {**self.metadata, "render_fps": int(round(spec.control_hz))}
        self.action_space = spaces.Box(spec.action_low, spec.action_high, dtype=np.float32)
        self.observation_space = spaces.Dict(
            {
                "state": spaces.Box(-np.inf, np.inf, shape=(spec.state_dim,), dtype=np.float32),
                "images": spaces.Dict(
                    {cam.name: spaces.Box(0, 255, shape=cam.shape, dtype=np.uint8) for cam in spec.cameras}
                ),
            }
        )
        self._last: Observation | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        # The episode seed comes from the env's generator, so gymnasium's seeding rules give reproducible resets.
        episode_seed = int(self.np_random.integers(0, 2**31 - 1))
        self._last = self.sim.start_episode(episode_seed)
        return self._to_gym(self._last), dict(self._last.info)

    def step(self, action):
        if self._last is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        previous = self._last.info["progress"]
        applied = self.sim.send_action(np.asarray(action, dtype=np.float32))
        self._last = self.sim.get_observation()
        info: dict[str, Any] = dict(self._last.info)
        info["applied_action"] = applied
        reward = float(info["progress"] - previous)
        terminated = bool(info["success"])
        truncated = bool(self.sim.timed_out and not terminated)
        return self._to_gym(self._last), reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array" or self._last is None:
            return None
        return self._last.images[self.sim.spec.cameras[0].name]

    def close(self) -> None:
        self.sim.disconnect()

    @staticmethod
    def _to_gym(obs: Observation) -> dict[str, Any]:
        return {"state": obs.state, "images": dict(obs.images)}
