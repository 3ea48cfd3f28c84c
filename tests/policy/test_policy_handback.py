"""Hand-back after a correction: the first policy action after a takeover is planned from the arm's new pose.

The arm here goes wherever it is commanded and reports that as its state; the policy's model plans a chunk that
steps away from the observed state, so every action tells which observation its chunk was predicted from.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from policy_helpers import fake_observation, tiny_config

from actors.episode import run_episode
from policy.base import Normalizer
from policy.builtin import BuiltinPolicyModel
from policy.deploy import Policy
from robot_io.spec import CameraSpec, Observation, RobotSpec

STEP = 0.1
# Where the corrector drives the arm: far from anything the pre-takeover plan reaches.
CORRECTED = 5.0


class PlanFromState(BuiltinPolicyModel):
    """Plans chunk step i as the observed state + (i + 1) STEP, and records the state of every plan."""

    def __init__(self, config):
        super().__init__(config)
        self.planned_from: list[float] = []

    def predict_chunk(self, inputs, cfg_beta=1.0, generator=None):
        self.planned_from.append(float(inputs.state[0, 0]))
        offsets = STEP * torch.arange(1, self.config.chunk_size + 1, dtype=torch.float32)
        return inputs.state[:, None, :] + offsets[None, :, None]


class PointArm:
    """A Robot whose state is the last action it was sent (with the policy's cameras)."""

    def __init__(self, config) -> None:
        self._spec = RobotSpec(
            cameras=tuple(CameraSpec(cam, 32, 32) for cam in config.cameras),
            state_names=tuple(f"s{i}" for i in range(config.state_dim)),
            action_names=tuple(f"a{i}" for i in range(config.action_dim)),
            action_low=np.full(config.action_dim, -10.0),
            action_high=np.full(config.action_dim, 10.0),
            control_hz=10.0,
        )
        self._images = fake_observation(config, height=32).images
        self.position = np.zeros(config.state_dim, dtype=np.float32)
        self.applied: list[np.ndarray] = []

    @property
    def spec(self) -> RobotSpec:
        return self._spec

    @property
    def is_connected(self) -> bool:
        return True

    def connect(self) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def start_episode(self, seed=None) -> Observation:
        self.position[:] = 0.0
        return self.get_observation()

    def get_observation(self) -> Observation:
        return Observation(images=self._images, state=self.position.copy(), timestamp=0.0)

    def send_action(self, action: np.ndarray) -> np.ndarray:
        applied = np.asarray(action, dtype=np.float32).copy()
        self.position = applied.copy()
        self.applied.append(applied)
        return applied

    def hold_action(self) -> np.ndarray:
        return self.position.copy()


class CorrectorDuring:
    """A teleoperator that drives the arm to CORRECTED during the control steps ``takeover``."""

    def __init__(self, takeover: range, action_dim: int) -> None:
        self.takeover = takeover
        self.action = np.full(action_dim, CORRECTED, dtype=np.float32)
        self.calls = 0

    def connect(self) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def get_action(self, observation):
        step, self.calls = self.calls, self.calls + 1
        return self.action.copy() if step in self.takeover else None


def identity_normalizer(config) -> Normalizer:
    return Normalizer(
        {
            "state": {"mean": np.zeros(config.state_dim), "std": np.ones(config.state_dim)},
            "action": {"mean": np.zeros(config.action_dim), "std": np.ones(config.action_dim)},
        }
    )


def run_with_takeover(config, takeover: range, steps: int):
    model = PlanFromState(config)
    arm = PointArm(config)
    result = run_episode(
        arm,
        Policy(model, identity_normalizer(config)),
        max_steps=steps,
        seed=0,
        teleop=CorrectorDuring(takeover, config.action_dim),
    )
    assert result.intervention_steps == len(takeover)
    return np.stack(arm.applied)[:, 0], model.planned_from


@pytest.mark.parametrize(
    "overrides",
    [
        # Open-loop: the chunk planned at step 0 still has two actions queued when the corrector takes over.
        {"chunk_size": 4, "execute_steps": 4},
        # Ensembled: chunks planned at steps 0 and 1 still cover the step after the hand-back.
        {"chunk_size": 4, "temporal_ensemble": 0.5},
    ],
    ids=["execute_steps", "temporal_ensemble"],
)
def test_first_action_after_a_hand_back_is_planned_from_the_corrected_pose(overrides):
    config = tiny_config(state_dim=3, action_dim=3, **overrides)
    applied, planned_from = run_with_takeover(config, takeover=range(2, 5), steps=6)
    np.testing.assert_allclose(applied[:2], [STEP, 2 * STEP], rtol=1e-5)
    np.testing.assert_allclose(applied[2:5], CORRECTED)
    # A stale plan would send the arm back towards 3 STEP; a fresh one steps on from where the corrector left it.
    assert planned_from[-1] == pytest.approx(CORRECTED)
    assert applied[5] == pytest.approx(CORRECTED + STEP)


def test_policy_steps_without_a_takeover_still_follow_the_plan():
    # The hook fires on takeovers only: without one, the open-loop chunk runs out before the next plan.
    config = tiny_config(state_dim=3, action_dim=3, chunk_size=4, execute_steps=4)
    applied, planned_from = run_with_takeover(config, takeover=range(0), steps=6)
    np.testing.assert_allclose(applied, STEP * np.array([1, 2, 3, 4, 5, 6]), rtol=1e-5)
    assert planned_from == pytest.approx([0.0, 4 * STEP])


def test_discard_plan_keeps_the_episode_noise_stream():
    # Reseeding at a takeover would make the samples after each hand-back repeat the episode's first noise.
    torch.manual_seed(0)
    config = tiny_config(head="flow")
    policy = Policy(BuiltinPolicyModel(config), identity_normalizer(config))
    observation = fake_observation(config)
    policy.reset(3)
    first = policy.act(observation)
    policy.discard_plan()
    replanned = policy.act(observation)
    policy.reset(3)
    np.testing.assert_array_equal(policy.act(observation), first)
    assert not np.allclose(replanned, first)
