"""An SO-101 needs only its preset plus its port and ids: every policy and value model is built for it from the
arm's spec, without hardware (LeRobot's SO-101 follower is constructed but never connected)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from test_config import compose_config

from improve.preflight import PreflightError, check_config, fit_models_to_arm
from policy import build_model
from policy.base import Normalizer
from policy.deploy import Policy
from robot_io.lerobot_adapter import make_lerobot_robot
from robot_io.spec import Observation, RobotSpec
from valuemodel import ValueBatch, build_value_model

SO101 = [
    "+robot@robots.arm0=so101",
    "~robot@robots.sim0",
    "~robot@robots.sim1",
    "loop.outcome_source=operator",
    "robots.arm0.lerobot.robot_kwargs.port=/dev/null",
    "robots.arm0.lerobot.robot_kwargs.id=so101_test",
    "robots.arm0.lerobot.teleop_kwargs.port=/dev/null",
]
JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")


def so101_spec(config, tmp_path) -> RobotSpec:
    lerobot = config.robots["arm0"].lerobot
    lerobot.robot_kwargs["calibration_dir"] = str(tmp_path)
    return make_lerobot_robot(lerobot).spec


def observation(spec: RobotSpec) -> Observation:
    rng = np.random.default_rng(0)
    return Observation(
        images={c.name: rng.integers(0, 255, c.shape, dtype=np.uint8) for c in spec.cameras},
        state=rng.normal(size=spec.state_dim).astype(np.float32),
        timestamp=time.time(),
    )


@pytest.mark.parametrize("policy", ["builtin", "act", "diffusion"])
def test_every_policy_is_built_for_an_so101_from_its_spec(policy, tmp_path):
    config = compose_config(*SO101, f"policy@policy_learner.policy={policy}")
    check_config(config)
    spec = so101_spec(config, tmp_path)
    assert spec.camera_names == ("front", "wrist") and spec.action_names == tuple(f"{j}.pos" for j in JOINTS)
    assert spec.cameras[0].shape == (96, 128, 3)  # 4:3 like the cameras: nothing squashed
    assert config.robots["arm0"].is_paced  # a real arm runs at its control rate without being told
    fitted = fit_models_to_arm(config, spec).policy_learner.policy
    assert fitted.cameras == ["front", "wrist"]
    assert (fitted.state_dim, fitted.action_dim) == (6, 6)
    if policy == "builtin":
        # The five joints by name, not the simulator's "first three dims" (which would be two joints and a half).
        assert fitted.relative_action_dims == [0, 1, 2, 3, 4] == fitted.state_dims_of_relative
    else:
        assert fitted.relative_action_dims == []
    stats = {"state": {"mean": [0.0] * 6, "std": [1.0] * 6}, "action": {"mean": [0.0] * 6, "std": [1.0] * 6}}
    runner = Policy(build_model(fitted), Normalizer(stats))
    runner.reset(seed=0)
    action = runner.act(observation(spec))
    assert action.shape == (6,) and np.all(np.isfinite(action))


def test_relative_action_dims_set_by_hand_are_not_replaced_by_the_arms_choice(tmp_path):
    config = compose_config(*SO101, "policy_learner.policy.relative_action_dims=[]")
    fitted = fit_models_to_arm(config, so101_spec(config, tmp_path)).policy_learner.policy
    assert fitted.relative_action_dims == [] and fitted.relative_actions is None
    named = compose_config(*SO101, "policy_learner.policy.relative_actions=[]")
    assert (
        fit_models_to_arm(named, so101_spec(named, tmp_path)).policy_learner.policy.relative_action_dims == []
    )


@pytest.mark.parametrize("valuemodel", ["tiny", "static", "wvm_tiny"])
def test_every_value_model_is_built_for_an_so101_from_its_spec(valuemodel, tmp_path):
    config = compose_config(*SO101, f"valuemodel={valuemodel}")
    spec = so101_spec(config, tmp_path)
    fitted = fit_models_to_arm(config, spec).valuemodel
    assert fitted.cameras == ["front", "wrist"] and fitted.state_dim == 6
    model = build_value_model(fitted)
    if valuemodel == "wvm_tiny":
        return  # WVM reads video windows; built is what this test is about
    frames = torch.as_tensor(np.stack([observation(spec).images[c] for c in fitted.cameras]))
    batch = ValueBatch(
        task_id=torch.zeros(1, dtype=torch.long),
        images={c: frames[k : k + 1].permute(0, 3, 1, 2) for k, c in enumerate(fitted.cameras)},
        state=torch.zeros(1, 6),
    )
    with torch.no_grad():
        prediction = model.predict(batch)
    assert torch.isfinite(prediction.value).all()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["policy_learner.policy.cameras=[top,wrist]"],
            r"reads cameras \['top'\], which the arm does not have",
        ),
        (["policy_learner.policy.relative_actions=[ee_x]"], r"relative actions \['ee_x'\] are not among"),
        (["policy_learner.policy.state_dim=9"], r"its state_dim is 9, but the arm has 6"),
        (["valuemodel.cameras=[front,top]"], r"value model reads cameras \['top'\]"),
    ],
)
def test_what_an_so101_lacks_is_named_before_any_arm_moves(overrides, message, tmp_path):
    config = compose_config(*SO101, *overrides)
    with pytest.raises(PreflightError, match=message):
        fit_models_to_arm(config, so101_spec(config, tmp_path))


def test_a_real_arm_cannot_run_unpaced():
    with pytest.raises(PreflightError, match=r"arms \['arm0'\] are real arms set to run unpaced"):
        check_config(compose_config(*SO101, "robots.arm0.paced=false"))
    assert not compose_config().robots["sim0"].is_paced  # the simulator runs as fast as it can
