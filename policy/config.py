"""The one config dataclass of the policies (built-in, LeRobot ACT, LeRobot diffusion).

It is stored as JSON beside every checkpoint, so an actor rebuilds the architecture and the deployment behaviour
(chunking, indicator, guidance) from the checkpoint alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
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
    """Cameras the policy looks at, in this order (a subset of the robot's). Empty: the arm's own choice
    (``robot.models.policy_cameras``, else all its cameras), filled in by ``with_robot_spec``. In the simulator
    the item sits at the edge of the front camera's view (often half cut off), so the built-in policy reads the
    top camera for where the item is and the wrist camera for the final approach; top+wrist BC beat front+wrist
    clearly."""
    image_size: int = 64
    """Images are fitted to image_size x image_size before the encoders, by ``image_fit``."""
    image_fit: str = "letterbox"
    """``letterbox`` (aspect ratio kept, black padding: ``robot_io.images``) or ``squash`` (plain resize), which
    checkpoints written before letterboxing were trained with and still use."""
    state_dim: int = 9
    """Proprioception width (the robot spec's state_dim); 0: the arm's, filled in by ``with_robot_spec``."""
    action_dim: int = 5
    """Action width (the robot spec's action_dim); 0: the arm's. The robot takes absolute targets."""
    relative_actions: list[str] | None = None
    """Actions predicted relative to the measured state at the observation, a_{t+k}[i] - state_t[i], by name
    (``ee_x``, ``shoulder_pan.pos``); each must also be a state name, the same quantity measured. Deployment adds
    the state back, so the robot still receives absolute targets. None: the arm's choice
    (``robot.models.relative_actions``); []: every action absolute. ``with_robot_spec`` turns the names into
    ``relative_action_dims`` and ``relative_state_dims``. Absolute position targets let a network copy the
    measured pose (action ~ state) and stall short of the item; grippers stay absolute (a relative gripper
    target drifts past the 4 mm margin that releases a held item, seen in simulator rollouts)."""
    relative_action_dims: list[int] | None = None
    """Indices into the action of the relative actions (normalised per chunk step), filled from
    ``relative_actions`` against the arm's names. None: from the arm (``with_robot_spec``); set by hand (with
    ``relative_actions`` left None) they stand instead of the arm's choice, e.g. [] for absolute actions."""
    relative_state_dims: list[int] | None = None
    """Indices into the state of the same quantities, pairwise with ``relative_action_dims``; None: the same
    indices (the simulator's state starts with its action's quantities)."""
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
        if self.image_fit not in ("letterbox", "squash"):
            raise ValueError(f"image_fit must be letterbox or squash, got {self.image_fit!r}")
        if self.state_dim < 0 or self.action_dim < 0:
            raise ValueError(
                f"state_dim and action_dim must be positive (or 0: the arm's), got {self.state_dim}, "
                f"{self.action_dim}"
            )
        if self.relative_state_dims is not None and len(self.relative_state_dims) != len(
            self.relative_action_dims or []
        ):
            raise ValueError(
                f"relative_state_dims {self.relative_state_dims} must pair with relative_action_dims "
                f"{self.relative_action_dims}"
            )
        if self.is_resolved:
            bad = [i for i in self.relative_action_dims or [] if not 0 <= i < self.action_dim]
            bad += [i for i in self.state_dims_of_relative if not 0 <= i < self.state_dim]
            if bad:
                raise ValueError(
                    f"relative dims {bad} must index the action ({self.action_dim}) and the state "
                    f"({self.state_dim})"
                )

    @property
    def is_resolved(self) -> bool:
        """True once nothing is left to the arm (cameras, widths): the model can be built."""
        return bool(self.cameras) and self.state_dim > 0 and self.action_dim > 0

    @property
    def state_dims_of_relative(self) -> list[int]:
        """The state indices paired with ``relative_action_dims``."""
        if self.relative_state_dims is None:
            return list(self.relative_action_dims or [])
        return list(self.relative_state_dims)

    def with_robot_spec(
        self,
        camera_names: Sequence[str],
        state_names: Sequence[str],
        action_names: Sequence[str],
        *,
        arm_cameras: Sequence[str] = (),
        arm_relative_actions: Sequence[str] = (),
    ) -> PolicyConfig:
        """This config with what it leaves to the arm filled in from the arm's spec (its cameras and names) and
        its model defaults (``arm_cameras``, ``arm_relative_actions``: ``robot.models``); raises ValueError naming
        every way the config and the arm disagree, and the fix."""
        cameras = list(self.cameras or arm_cameras or camera_names)
        relative = list(arm_relative_actions if self.relative_actions is None else self.relative_actions)
        problems = []
        missing = [c for c in cameras if c not in camera_names]
        if missing:
            problems.append(
                f"it reads cameras {missing}, which the arm does not have (it has {list(camera_names)}): set "
                "policy.cameras to some of them, or [] for the arm's own choice"
            )
        for name, width, names in (
            ("state_dim", self.state_dim, state_names),
            ("action_dim", self.action_dim, action_names),
        ):
            if width and width != len(names):
                problems.append(
                    f"its {name} is {width}, but the arm has {len(names)} ({', '.join(names)}): set "
                    f"policy.{name}={len(names)} or 0 for the arm's"
                )
        unknown = [n for n in relative if n not in action_names or n not in state_names]
        if unknown:
            problems.append(
                f"relative actions {unknown} are not among the arm's actions that it also measures "
                f"(actions {list(action_names)}, state {list(state_names)}): name them by the arm's feature "
                "names, or set policy.relative_actions=[] for absolute actions"
            )
        if problems:
            raise ValueError(f"the policy ({self.kind}) does not fit the arm: {'; '.join(problems)}")
        resolved = dict(
            cameras=cameras,
            state_dim=len(state_names),
            action_dim=len(action_names),
            relative_actions=relative,
            relative_action_dims=[list(action_names).index(n) for n in relative],
            relative_state_dims=[list(state_names).index(n) for n in relative],
        )
        if self.relative_actions is None and self.relative_action_dims is not None:
            # Indices set by hand stand (policy.relative_action_dims=[] is not replaced by the arm's relative
            # actions; a stored config is rebuilt as it was trained), as long as each pairs an action with the
            # state value of the same name.
            for key in ("relative_actions", "relative_action_dims", "relative_state_dims"):
                resolved.pop(key)
            pairs = zip(self.relative_action_dims, self.state_dims_of_relative, strict=True)
            mismatched = [
                (
                    action_names[a] if a < len(action_names) else a,
                    state_names[s] if s < len(state_names) else s,
                )
                for a, s in pairs
                if a >= len(action_names) or s >= len(state_names) or action_names[a] != state_names[s]
            ]
            if mismatched:
                raise ValueError(
                    f"the policy ({self.kind}) does not fit the arm: relative_action_dims pair actions with state "
                    f"values that are not the same quantity {mismatched}; name them instead with "
                    "policy.relative_actions (or [] for absolute actions)"
                )
        return replace(self, **resolved)

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
        legacy: dict[str, Any] = {
            "relative_action_dims": [],
            "encoder_keypoints": False,
            "image_fit": "squash",
        }
        return cls(**{**legacy, **d})

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def load_json(cls, path: str | Path) -> PolicyConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
