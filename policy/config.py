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
    cameras: list[str] = field(default_factory=lambda: ["front", "wrist"])
    """Cameras the policy looks at, in this order (a subset of the robot's)."""
    image_size: int = 64
    """Images are resized to image_size x image_size (square) before the encoders."""
    state_dim: int = 9
    """Proprioception width (the robot spec's state_dim)."""
    action_dim: int = 5
    """Action width (the robot spec's action_dim); actions are absolute targets."""
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
    head: str = "flow"
    """Built-in action head: ``flow`` (flow matching, true CFG on velocities) or ``l1`` (ACT-style regression, CFG
    applied to the predicted actions)."""
    encoder_channels: int = 16
    """Width of the first conv layer of each camera encoder (doubles once); 16 keeps a step ~50 ms on 1 core."""
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PolicyConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown PolicyConfig fields {unknown} (checkpoint from a newer vivarl?)")
        return cls(**d)

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def load_json(cls, path: str | Path) -> PolicyConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
