"""The robot seam's one config dataclass, composed by Hydra from ``configs/robot/*.yaml``.

``type`` picks the implementation; only the section with the same name is read. Keeping every section in one
typed dataclass means a typo in any override fails in Hydra's own struct check, before any arm is touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from robot_io.safety import SafetyConfig

ROBOT_TYPES = ("sim_box", "lerobot", "bridge")


@dataclass
class ExpertConfig:
    """The scripted box-assembly expert: demonstrator, simulated human corrector, and source of suboptimal data.

    Every knob is drawn per episode from the episode seed, so a dataset with knobs on is still reproducible.
    """

    # Std of Gaussian noise added to the expert's position targets (metres).
    action_noise: float = 0.0
    # Probability, per stage, of pausing (progress plateaus) and how long a pause lasts (control steps).
    hesitation_prob: float = 0.0
    hesitation_steps: list[int] = field(default_factory=lambda: [8, 20])
    # Probability, per completed placement and flap fold, of undoing it and redoing it (progress traces a V).
    retry_prob: float = 0.0
    # Probability, per episode, of dropping the item mid-transport and giving up (a failure).
    drop_prob: float = 0.0
    # Probability, per episode, of stalling until the time limit (a failure by time-out).
    stall_prob: float = 0.0
    # As a corrector (not in demo mode): take over once progress has not risen for this many steps (0: never).
    takeover_stall_steps: int = 30
    # As a corrector: hand control back after completing this many stages (0: keep control to the episode's end).
    handback_after_stages: int = 1


@dataclass
class SimBoxConfig:
    """MuJoCo box assembly: put the item in the box, fold both flaps, close the lid."""

    # The top view shows the item wherever it starts (in the front view it can sit half out of frame), which the
    # built-in policy needs to localise its grasp; the value models use front and wrist.
    cameras: list[str] = field(default_factory=lambda: ["front", "top", "wrist"])
    image_height: int = 64
    image_width: int = 64
    control_hz: float = 10.0
    # Time limit of one episode, in control steps.
    max_steps: int = 400
    # Physics substeps per control step are derived from the model timestep and control_hz.
    # Randomise the item's start position within this many metres of its nominal place.
    item_position_noise: float = 0.03
    # Success needs every stage to hold with the gripper touching nothing for this many control steps.
    success_hold_steps: int = 10
    # Multisample anti-aliasing of the camera images (MuJoCo's offsamples; 0 = off). Off by default: on a machine
    # without a GPU, 4 samples made a step with three 64x64 cameras 1.7x slower (benchmarks/bench_sim.py) for
    # smoother edges only.
    render_samples: int = 0
    expert: ExpertConfig = field(default_factory=ExpertConfig)


@dataclass
class LeRobotArmConfig:
    """A real arm made by LeRobot's ``make_robot_from_config`` (so101_follower, koch_follower, ...)."""

    # LeRobot robot type name, as registered with its RobotConfig (e.g. "so101_follower").
    robot_type: str = "so101_follower"
    # Python modules to import before robot_type and teleop_type are looked up: a lab's own robot or teleoperator
    # classes that register themselves with LeRobot but are not installed as lerobot_robot_* plugin packages.
    import_modules: list[str] = field(default_factory=list)
    # Keyword arguments of that robot's config class (port, id, cameras ...); see LeRobot's docs per robot.
    robot_kwargs: dict = field(default_factory=dict)
    # Optional teleoperator for human takeover (e.g. "so101_leader", "gamepad"); empty for none.
    teleop_type: str = ""
    teleop_kwargs: dict = field(default_factory=dict)
    # Leader-arm takeover: engage once a leader joint leaves its rest pose by this much (0: toggle only).
    teleop_takeover_threshold: float = 5.0
    # Leader-arm takeover: hand back to the policy once the leader has been held still this long (seconds).
    teleop_release_s: float = 2.0
    # Per-joint limits of commanded targets in the robot's units (degrees or -100..100 for LeRobot motors).
    action_low: list[float] = field(default_factory=list)
    action_high: list[float] = field(default_factory=list)
    max_action_delta: list[float] = field(default_factory=list)
    control_hz: float = 30.0
    # Size every camera frame is letterboxed to before it leaves the adapter (aspect ratio kept, black padding;
    # robot_io/images.py). The default is 4:3, the aspect of the usual 640x480 USB cameras, so none is padded.
    image_height: int = 96
    image_width: int = 128
    # After a failed read or write (a serial glitch, a USB camera that dropped out) the arm is reconnected, up to
    # this many attempts with a backoff doubling from reconnect_backoff_s; 0 turns reconnecting off.
    reconnect_attempts: int = 3
    reconnect_backoff_s: float = 0.2


@dataclass
class BridgeClientConfig:
    """The actor's side of the robot bridge (robot_io.bridge)."""

    # ZeroMQ endpoint of the bridge server on the arm's control PC.
    address: str = "tcp://127.0.0.1:5555"
    # CURVE key files made by `vivarl-keys`; empty paths with allow_plaintext=true only on loopback.
    server_public_key: str = ""
    client_secret_key: str = ""
    allow_plaintext: bool = False
    # One request's deadline, and the total time the client keeps reconnecting before it raises.
    request_timeout_s: float = 2.0
    reconnect_timeout_s: float = 10.0
    # Longest pause between reconnect attempts (the backoff doubles from 50 ms up to this).
    max_backoff_s: float = 1.0


@dataclass
class ArmModelDefaults:
    """What the models read from this arm when their own config leaves it to the arm.

    The arm's spec says which cameras and widths exist; this says which of its cameras show what a model needs
    and which actions are positions, which only the person who set the arm up knows. Every name must be one of
    the arm's (checked before any arm moves). Empty camera lists mean every camera of the arm.
    """

    # Cameras the policy reads when policy.cameras is empty.
    policy_cameras: list[str] = field(default_factory=list)
    # Cameras the value model reads when valuemodel.cameras is empty.
    value_cameras: list[str] = field(default_factory=list)
    # Actions a policy predicts relative to the measured state when policy.relative_actions is null: each must
    # also be a state name (the same quantity, measured). Positions, not grippers: a relative gripper target
    # drifts open past what releases a held item.
    relative_actions: list[str] = field(default_factory=list)


@dataclass
class RobotConfig:
    """One arm as the actor sees it."""

    # Which implementation: one of ROBOT_TYPES.
    type: str = "sim_box"
    # Unique name of this arm, used in episode ids and as the Ray resource "robot:<name>" that pins its actor.
    name: str = "arm0"
    # Ray custom resource that only the node wired to this arm advertises; empty means "robot:<name>".
    node_resource: str = ""
    # Time limit of one episode on a real or bridged arm, in control steps (the simulator has its own).
    max_episode_steps: int = 600
    # "module:function" called with every observation of an episode; the first True ends it as a success without
    # asking the operator (a scale, a vision check). Empty: the operator or the time limit ends episodes.
    success_detector: str = ""
    # Pace the control loop at the arm's control_hz. Empty (null): paced for a real arm (lerobot, bridge), as
    # fast as it can go for the simulator, which only moves when stepped. A real arm cannot be unpaced.
    paced: bool | None = None
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    models: ArmModelDefaults = field(default_factory=ArmModelDefaults)
    sim_box: SimBoxConfig = field(default_factory=SimBoxConfig)
    lerobot: LeRobotArmConfig = field(default_factory=LeRobotArmConfig)
    bridge: BridgeClientConfig = field(default_factory=BridgeClientConfig)

    def __post_init__(self) -> None:
        if self.type not in ROBOT_TYPES:
            raise ValueError(
                f"unknown robot type '{self.type}': choose one of {list(ROBOT_TYPES)} (e.g. robot=sim_box)"
            )

    @property
    def resource(self) -> str:
        return self.node_resource or f"robot:{self.name}"

    @property
    def is_real(self) -> bool:
        """A physical arm, directly or across the bridge (the bridge is how a physical arm on another PC is
        reached; a simulator served over it is still treated as the arm it stands in for)."""
        return self.type != "sim_box"

    @property
    def episode_limit_steps(self) -> int:
        """The episode time limit in control steps: the simulator's own, else ``max_episode_steps``."""
        return self.sim_box.max_steps if self.type == "sim_box" else self.max_episode_steps

    @property
    def is_paced(self) -> bool:
        return self.is_real if self.paced is None else self.paced


@dataclass
class BridgeServerConfig:
    """The arm's side of the robot bridge (``vivarl-bridge``), composed by Hydra from ``configs/bridge.yaml``."""

    # Where the server listens. Loopback by default: exposing an arm on the network is an explicit choice.
    address: str = "tcp://127.0.0.1:5555"
    # CURVE secret key of the server (``vivarl-keys DIR --name server`` writes server.key_secret) and the
    # directory of client public keys (*.key) allowed to connect; a client whose key is not there is refused.
    server_secret_key: str = ""
    authorized_keys_dir: str = ""
    # Serve unencrypted and unauthenticated; refused unless the address is loopback.
    allow_plaintext: bool = False
    # Hold the arm when the controlling client sent no action for this long during an episode, and refuse an
    # action whose retries took longer than this (0 disables both; the safety watchdog still applies).
    stale_command_timeout_s: float = 1.0
    # JPEG-compress camera images on the wire (lossy; for remote links where bandwidth matters).
    jpeg: bool = False
    jpeg_quality: int = 90
    # Serve the arm's teleoperator for human takeover: LeRobot's ``teleop_type``, or the simulator's scripted
    # expert in correction mode.
    teleop: bool = True
    # The arm this server drives, wrapped in its safety layer on this side of the link.
    robot: RobotConfig = field(default_factory=RobotConfig)

    def __post_init__(self) -> None:
        if self.robot.type == "bridge":
            raise ValueError(
                "a bridge server must drive an arm itself: robot.type=bridge would chain bridges"
            )
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if self.stale_command_timeout_s < 0:
            raise ValueError(f"stale_command_timeout_s must be >= 0, got {self.stale_command_timeout_s}")
