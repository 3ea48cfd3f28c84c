"""The Hydra composition: defaults, overrides, and clear errors for typos and unknown choices."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf.errors import ValidationError

from improve.config import VivarlConfig, register_configs, to_dataclass
from robot_io.config import RobotConfig

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")


def compose_config(*overrides: str) -> VivarlConfig:
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return to_dataclass(compose(config_name="config", overrides=list(overrides)))


def test_default_is_the_simulated_arm():
    cfg = compose_config()
    assert isinstance(cfg.robot, RobotConfig)
    assert cfg.robot.type == "sim_box"
    assert cfg.robot.sim_box.cameras == ["front", "wrist"]
    assert cfg.robot.resource == "robot:sim0"


def test_overrides_are_typed():
    cfg = compose_config("robot.sim_box.image_height=96", "demo.num_episodes=2")
    assert cfg.robot.sim_box.image_height == 96
    assert cfg.demo.num_episodes == 2


def test_every_robot_choice_composes():
    for choice, kind in (("so101", "lerobot"), ("bridge", "bridge"), ("sim_box", "sim_box")):
        assert compose_config(f"robot={choice}").robot.type == kind


def test_typo_in_override_names_the_key():
    with pytest.raises(ConfigCompositionException) as err:
        compose_config("robot.sim_box.imag_height=96")
    assert "Could not override 'robot.sim_box.imag_height'" in str(err.value)
    assert "not in 'SimBoxConfig'" in str(err.value.__cause__)


def test_wrong_type_is_refused():
    with pytest.raises(ConfigCompositionException) as err:
        compose_config("robot.sim_box.image_height=tall")
    assert isinstance(err.value.__cause__, ValidationError)


def test_unknown_robot_lists_the_options():
    with pytest.raises(MissingConfigException) as err:
        compose_config("robot=ur5")
    message = str(err.value)
    assert "ur5" in message and "sim_box" in message


def test_unknown_robot_type_field_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown robot type 'ur5'.*sim_box"):
        compose_config("robot.type=ur5")
