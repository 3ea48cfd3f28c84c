"""The one config dataclass of the policies (built-in, LeRobot ACT, LeRobot diffusion).

It is stored as JSON beside every checkpoint, so an actor rebuilds the architecture and the deployment behaviour
(chunking, indicator, guidance) from the checkpoint alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

KINDS = ("builtin", "act", "diffusion")
HEADS = ("flow", "l1")
DEPLOY_INDICATORS = ("positive", "negative", "dropped")


@dataclass
class PolicyConfig:
    """Everything needed to build, train and deploy one policy."""

    kind: str = "builtin"
    """Which model: ``builtin`` (small CNN, CPU-friendly), ``act`` or ``diffusion`` (LeRobot)."""
    cameras: list[str] = field(default_factory=lambda: ["top", "wrist"])
    """Cameras the policy looks at, in this order (a subset of the robot's). In the simulator the item sits at
    the edge of the front camera's view (often half cut off), so the built-in policy reads the top camera for
    where the item is and the wrist camera for the final approach; top+wrist BC beat front+wrist clearly."""
    image_size: int = 64
    """Images are resized to image_size x image_size (square) before the encoders."""
    state_dim: int = 9
    """Proprioception width (the robot spec's state_dim)."""
    action_dim: int = 5
    """Action width (the robot spec's action_dim); the robot takes absolute targets."""
    relative_action_dims: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Action dimensions predicted relative to the measured state at the observation, a_{t+k}[i] - state_t[i]
    (normalised per chunk step); deployment adds the state back, so the robot still receives absolute targets.
    Each listed index must name the same quantity in state and action (the simulator: 0-2 = ee x, y, z; 3 yaw;
    4 gripper opening). Empty = every dimension absolute. The default makes the end-effector position relative:
    absolute position targets let a network copy the measured pose (action ~ state) and stall short of the
    item. Yaw and gripper stay absolute: a relative gripper target drifts past the 4 mm margin that releases a
    held item, and a relative yaw accumulates bias (both seen in simulator rollouts)."""
    chunk_size: int = 10
    """Actions predicted per inference (the action chunk H)."""
    execute_steps: int = 5
    """Actions of a chunk executed open-loop before predicting again (ignored with temporal ensembling)."""
    temporal_ensemble: float = 0.0
    """ACT temporal-ensembling coefficient m (weights exp(-m i), i = age); 0 = open-loop chunks instead."""
    advantage_conditioned: bool = True
    """Feed the advantage indicator (RECAP). False trains and runs an unconditional policy (BC, filtered BC, AWR)."""
    indicator_dropout: float = 0.3
    """Probability that a training frame's indicator is replaced by "dropped" (also the unconditional model)."""
    deploy_indicator: str = "positive"
    """Indicator used at deployment: ``positive`` (RECAP), ``negative`` (ablation) or ``dropped``."""
    cfg_beta: float = 1.0
    """Classifier-free guidance v = v_uncond + beta (v_cond - v_uncond); 1.0 = off, RECAP reports 1.5-2.5."""
    seed: int = 0
    """Seed of the sampling noise at deployment (reset(seed) reseeds per episode)."""

    # --- built-in model ---
    head: str = "l1"
    """Built-in action head: ``l1`` (ACT-style regression, CFG applied to the predicted actions) or ``flow`` (flow
    matching, true CFG on velocities). l1 is the default because it learns the task within a CPU round's few
    thousand steps; flow needs many more (2000 steps: l1 reached progress 0.27, flow 0.06, same data)."""
    encoder_channels: int = 16
    """Width of the first conv layer of each camera encoder (doubles once); 16 keeps a step ~50 ms on 1 core."""
    encoder_keypoints: bool = True
    """Add spatial-softmax keypoints (one image coordinate pair per channel of the last conv map) to each camera's
    flattened features: where the item is matters for the grasp, and keypoints hand it to the head directly.
    Costs no measurable time; over three paired BC runs it gave mean success 27% vs 18% (progress 0.49 vs 0.39)
    without them, within the large run-to-run spread, so it is a mild preference rather than a proven gain."""
    feature_dim: int = 128
    """Width of each camera feature, of the proprioception feature and of the indicator embedding."""
    hidden_dim: int = 512
    """Width of the action head's MLP."""
    shift_pixels: int = 4
    """Random-shift augmentation in training: pad by this many pixels and crop back at random (0 = off)."""
    flow_steps: int = 10
    """Euler steps from noise to an action chunk (flow head)."""

    # --- LeRobot models ---
    lerobot_overrides: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of the LeRobot config (ACTConfig / DiffusionConfig), e.g. dims for tiny tests."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"policy kind must be one of {list(KINDS)}, got {self.kind!r}")
        if self.head not in HEADS:
            raise ValueError(f"policy head must be one of {list(HEADS)}, got {self.head!r}")
        if self.deploy_indicator not in DEPLOY_INDICATORS:
            raise ValueError(
                f"deploy_indicator must be one of {list(DEPLOY_INDICATORS)}, got {self.deploy_indicator!r}"
            )
        if not 0.0 <= self.indicator_dropout < 1.0:
            raise ValueError(f"indicator_dropout must be in [0, 1), got {self.indicator_dropout}")
        if not 1 <= self.execute_steps <= self.chunk_size:
            raise ValueError(
                f"execute_steps must be in 1..chunk_size ({self.chunk_size}), got {self.execute_steps}"
            )
        if not self.cameras:
            raise ValueError("a policy needs at least one camera")
        bad = [i for i in self.relative_action_dims if not 0 <= i < min(self.action_dim, self.state_dim)]
        if bad:
            raise ValueError(
                f"relative_action_dims {bad} must index both action ({self.action_dim}) and state "
                f"({self.state_dim})"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PolicyConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown PolicyConfig fields {unknown} (checkpoint from a newer vivarl?)")
        # Fields added after checkpoints were first written, with the behaviour those checkpoints were trained
        # with: a stored config that lacks one must rebuild the old model, not take today's default.
        legacy: dict[str, Any] = {"relative_action_dims": [], "encoder_keypoints": False}
        return cls(**{**legacy, **d})

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def load_json(cls, path: str | Path) -> PolicyConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
