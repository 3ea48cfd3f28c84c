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


def test_default_is_two_simulated_arms_named_by_their_keys():
    cfg = compose_config()
    assert set(cfg.robots) == {"sim0", "sim1"}
    for name, robot in cfg.robots.items():
        assert isinstance(robot, RobotConfig)
        assert robot.type == "sim_box" and robot.name == name
        assert robot.sim_box.cameras == ["front", "top", "wrist"]
        assert robot.resource == f"robot:{name}"


def test_overrides_are_typed_and_per_arm():
    cfg = compose_config("robots.sim1.sim_box.image_height=96", "demo.num_episodes=2")
    assert cfg.robots["sim1"].sim_box.image_height == 96
    assert cfg.robots["sim0"].sim_box.image_height == 64
    assert cfg.demo.num_episodes == 2


def test_every_robot_choice_composes():
    for choice, kind in (("so101", "lerobot"), ("bridge", "bridge"), ("sim_box", "sim_box")):
        assert compose_config(f"robot@robots.sim1={choice}").robots["sim1"].type == kind


def test_typo_in_override_names_the_key():
    with pytest.raises(ConfigCompositionException) as err:
        compose_config("robots.sim0.sim_box.imag_height=96")
    assert "Could not override 'robots.sim0.sim_box.imag_height'" in str(err.value)
    assert "not in 'SimBoxConfig'" in str(err.value.__cause__)


def test_wrong_type_is_refused():
    with pytest.raises(ConfigCompositionException) as err:
        compose_config("robots.sim0.sim_box.image_height=tall")
    assert isinstance(err.value.__cause__, ValidationError)


def test_unknown_robot_lists_the_options():
    with pytest.raises(MissingConfigException) as err:
        compose_config("robot@robots.sim1=ur5")
    message = str(err.value)
    assert "ur5" in message and "sim_box" in message


def test_unknown_robot_type_field_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown robot type 'ur5'.*sim_box"):
        compose_config("robots.sim0.type=ur5")


def test_a_continual_value_learner_is_refused_rather_than_silently_refit():
    with pytest.raises(ValueError, match="value_learner.mode='continual'.*mode=refit"):
        compose_config("value_learner.mode=continual")


def test_no_robot_is_a_clear_error():
    with pytest.raises(ValueError, match="no robots configured"):
        compose_config("~robot@robots.sim0", "~robot@robots.sim1")


def test_the_value_targets_time_limit_is_the_arms_unless_set():
    assert compose_config().value_learner.time_limit == 400  # configs/robot/sim_box.yaml max_steps
    longer = compose_config("robots.sim1.sim_box.max_steps=500")
    assert longer.value_learner.time_limit == 500  # the longest arm's: no episode outlives L_max
    assert (
        compose_config(
            "robots.sim1.sim_box.max_steps=500", "value_learner.time_limit=300"
        ).value_learner.time_limit
        == 300
    )
