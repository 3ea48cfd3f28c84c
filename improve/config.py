"""The top-level run config, one typed dataclass composed by Hydra from ``configs/``.

Hydra composes in the driver only; everything downstream receives these resolved dataclasses. The schema is
registered with Hydra's ConfigStore so that every override is type-checked and a typo fails at composition time
with Hydra's own message, before any robot is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from improve.monitor import WandbConfig
from learners.policy_labels import LabellingConfig
from learners.policy_learner import PolicyLearnerConfig
from learners.value_learner import ValueLearnerConfig
from robot_io.config import RobotConfig
from valuemodel.config import ValueModelConfig


@dataclass
class TaskConfig:
    """What the arms are asked to do; the name keys per-task statistics, the instruction conditions models."""

    name: str = "box_assembly"
    instruction: str = "put the item in the box, fold the flaps and close the lid"


@dataclass
class DemoBatchConfig:
    """The scripted-expert episode batch that `vivarl-demo` records (a look at the task, no learning)."""

    # Episodes to record, with seeds seed, seed+1, ...
    num_episodes: int = 4
    seed: int = 0
    # Write an mp4 of every camera side by side.
    video: bool = True
    video_fps: float = 10.0


@dataclass
class LoopConfig:
    """The improvement loop: round 0 learns from demonstrations, each later round improves on the last."""

    # Improvement rounds after round 0 (the run stops earlier if the budget runs out).
    rounds: int = 2
    # Round 0: demonstrations recorded by the arms' demonstrators (the scripted expert in simulation).
    demo_episodes: int = 30
    # Each improvement round: policy rollouts with human (or scripted) corrections.
    episodes_per_round: int = 10
    # Each round ends with this many evaluation episodes: indicator positive, no interventions.
    eval_episodes: int = 10
    # Stop starting new rounds after this many hours of wall time (0: no limit).
    budget_hours: float = 0.0
    # Base of the episode seeds (simulation).
    seed: int = 0
    # Attempts to collect a stage's episodes when arms fail mid-stage, before the run stops with an error.
    max_collect_attempts: int = 5
    # "simulator" (ground truth) or "operator" (a prompt on each arm's node; unlabelled after the time-out).
    outcome_source: str = "simulator"
    outcome_timeout_s: float = 20.0
    # Pace actors at the arms' control rate (real arms); the simulator runs as fast as it can.
    realtime: bool = False
    # Advantage labelling: the policy learner trains on the indicators of each round's labelling run.
    use_learned_value: bool = True


@dataclass
class RayConfig:
    # Empty: start a local Ray (with one resource per configured arm); "auto" or host:port: join a cluster.
    address: str = ""
    # Logical CPUs of the local Ray (0: one per arm plus two for the learners, whatever the machine has).
    num_cpus: int = 0
    # Restarts of a robot actor that died (its torn episode is never sampled; the stage recollects).
    actor_max_restarts: int = 3
    # Torch device of policy inference inside robot actors.
    actor_device: str = "cpu"


@dataclass
class VivarlConfig:
    # Where this run writes everything; Hydra's own output dir is set to it. Resuming = same run_dir.
    run_dir: str = "runs/default"
    # The replay store of this run (a directory or any fsspec URL).
    store_url: str = MISSING
    # The arms, by name: each entry is composed from configs/robot/ (``robot@robots.<name>: <choice>`` in the
    # defaults list); the key is the arm's name and wins over any ``name`` inside the entry.
    robots: dict[str, RobotConfig] = field(default_factory=dict)
    task: TaskConfig = field(default_factory=TaskConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    valuemodel: ValueModelConfig = field(default_factory=ValueModelConfig)
    value_learner: ValueLearnerConfig = field(default_factory=ValueLearnerConfig)
    labelling: LabellingConfig = field(default_factory=lambda: LabellingConfig(run="per-round"))
    policy_learner: PolicyLearnerConfig = field(
        # The round driver replaces labelling_run with each round's own labelling run.
        default_factory=lambda: PolicyLearnerConfig(
            store_url=MISSING, checkpoint_dir=MISSING, labelling_run="per-round"
        )
    )
    demo: DemoBatchConfig = field(default_factory=DemoBatchConfig)


def register_configs() -> None:
    """Make the schemas known to Hydra; ``configs/config.yaml`` lists ``vivarl_schema`` first in its defaults."""
    cs = ConfigStore.instance()
    cs.store(name="vivarl_schema", node=VivarlConfig)


def to_dataclass(cfg: DictConfig) -> VivarlConfig:
    """Resolve interpolations and convert to the dataclass (runs ``__post_init__`` validation)."""
    config: VivarlConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    if not config.robots:
        raise ValueError(
            "no robots configured: add one with +robot@robots.<name>=sim_box (see configs/robot/)"
        )
    for name, robot in config.robots.items():
        robot.name = name
    return config
