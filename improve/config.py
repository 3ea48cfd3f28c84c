"""The top-level run config, one typed dataclass composed by Hydra from ``configs/``.

Hydra composes in the driver only; everything downstream receives these resolved dataclasses. The schema is
registered with Hydra's ConfigStore so that every override is type-checked and a typo fails at composition time
with Hydra's own message, before any robot is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from robot_io.config import RobotConfig


@dataclass
class TaskConfig:
    """What the arms are asked to do; the name keys per-task statistics, the instruction conditions models."""

    name: str = "box_assembly"
    instruction: str = "put the item in the box, fold the flaps and close the lid"


@dataclass
class DemoBatchConfig:
    """The scripted-expert episode batch that the main job records."""

    # Episodes to record, with seeds seed, seed+1, ...
    num_episodes: int = 4
    seed: int = 0
    # Write an mp4 of every camera side by side.
    video: bool = True
    video_fps: float = 10.0


@dataclass
class VivarlConfig:
    # Where this run writes everything; Hydra's own output dir is set to it.
    run_dir: str = "runs/default"
    # The arms, by name: each entry is composed from configs/robot/ (``robot@robots.<name>: <choice>`` in the
    # defaults list); the key is the arm's name and wins over any ``name`` inside the entry.
    robots: dict[str, RobotConfig] = field(default_factory=dict)
    task: TaskConfig = field(default_factory=TaskConfig)
    demo: DemoBatchConfig = field(default_factory=DemoBatchConfig)


def register_configs() -> None:
    """Make the schemas known to Hydra; ``configs/config.yaml`` lists ``vivarl_schema`` first in its defaults."""
    cs = ConfigStore.instance()
    cs.store(name="vivarl_schema", node=VivarlConfig)


def to_dataclass(cfg: DictConfig) -> VivarlConfig:
    """Resolve interpolations and convert to the dataclass (runs ``__post_init__`` validation)."""
    config: VivarlConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    if not config.robots:
        raise ValueError("no robots configured: add one with +robot@robots.<name>=sim_box (see configs/robot/)")
    for name, robot in config.robots.items():
        robot.name = name
    return config
