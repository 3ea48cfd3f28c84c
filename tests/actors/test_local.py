"""The robot worker without Ray, as the results scripts use it: demonstrations and checkpoint evaluations."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from actors.local import deployment, evaluate_policy, record_demonstrations, sim_arm, summarise
from actors.weights import unpack_checkpoint
from policy import Normalizer, PolicyConfig, load_policy, save_policy
from policy.builtin import BuiltinPolicyModel
from replay import Outcome, ReplayStore
from robot_io.config import ExpertConfig, SimBoxConfig
from robot_io.safety import SafetyConfig

ROOT = Path(__file__).resolve().parents[2]
SIM = SimBoxConfig(cameras=["front", "wrist"], image_height=32, image_width=32, max_steps=30)


def test_the_simulated_arm_has_the_safety_settings_of_its_hydra_config():
    shipped = yaml.safe_load((ROOT / "configs/robot/sim_box.yaml").read_text())["safety"]
    arm = sim_arm(SIM, ExpertConfig(hesitation_prob=0.5))
    assert arm.safety == SafetyConfig(**shipped)
    assert arm.type == "sim_box" and arm.sim_box.expert.hesitation_prob == 0.5
    assert SIM.expert == ExpertConfig(), "the caller's config is left as it was"


def test_demonstrations_carry_the_runners_metadata(tmp_path):
    url = str(tmp_path / "store")
    metas = record_demonstrations(url, sim_arm(SIM, ExpertConfig(hesitation_prob=1.0)), [4, 5], round=2)
    store = ReplayStore.open(url)
    assert sorted(store.episode_ids()) == sorted(m.episode_id for m in metas)
    for meta, seed in zip(metas, (4, 5), strict=True):
        assert store.record(meta.episode_id).meta == meta
        assert (meta.seed, meta.purpose, meta.round, meta.policy_version) == (seed, "demo", 2, "demo")
        assert meta.length == SIM.max_steps and meta.outcome is Outcome.FAILURE  # timed out at 30 steps
        assert "pause" in meta.tags and meta.labelled_by == "simulator"


def tiny_checkpoint(root: Path) -> Path:
    """An untrained built-in policy for the simulator (absolute actions, unit normalisation)."""
    config = PolicyConfig(
        cameras=["front", "wrist"], image_size=32, chunk_size=4, execute_steps=2, encoder_channels=8,
        feature_dim=32, hidden_dim=64, head="l1", relative_action_dims=[],
    )  # fmt: skip
    unit = {
        column: {"mean": np.zeros(dim), "std": np.ones(dim)}
        for column, dim in (("state", config.state_dim), ("action", config.action_dim))
    }
    return save_policy(BuiltinPolicyModel(config), Normalizer(unit), root, 0, labelling_run=None)


def test_a_checkpoint_is_evaluated_alone_on_its_seeds_with_deployment_overrides(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    packed = deployment(tmp_path / "ckpt", "v0-negative", {"deploy_indicator": "negative"})
    assert load_policy(unpack_checkpoint(packed, tmp_path)).config.deploy_indicator == "negative"
    with pytest.raises(ValueError, match="deploy_indicator"):
        deployment(checkpoint, "v0", {"deploy_indicator": "sideways"})

    url = str(tmp_path / "eval")
    summary = evaluate_policy(
        checkpoint,
        url,
        sim_arm(SIM),
        [7, 8],
        version="v0-negative",
        overrides={"deploy_indicator": "negative"},
    )
    assert summary.episodes == 2 and summary.success_rate == 0.0 and summary.failures == 2
    assert summary.successes == {7: False, 8: False} and math.isnan(summary.mean_steps_success)
    metas = [r.meta for r in ReplayStore.open(url).records().values()]
    assert sorted(m.seed for m in metas) == [7, 8]
    assert {(m.purpose, m.policy_version, m.intervention_steps) for m in metas} == {
        ("eval", "v0-negative", 0)
    }


def test_summaries_average_successes_and_their_lengths():
    episodes = [
        {"seed": 1, "success": True, "steps": 100, "final_progress": 1.0},
        {"seed": 2, "success": False, "steps": 400, "final_progress": 0.5},
        {"seed": 3, "success": True, "steps": 200, "final_progress": 1.0},
    ]
    summary = summarise(episodes)
    assert summary.success_rate == pytest.approx(2 / 3) and summary.failures == 1
    assert summary.mean_steps_success == 150 and summary.mean_progress == pytest.approx(2.5 / 3)
    assert summary.successes == {1: True, 2: False, 3: True}
    with pytest.raises(ValueError, match="at least one seed"):
        summarise([])


def test_a_policy_sent_with_an_episode_call_is_swapped_in_before_that_episode(tmp_path):
    """The continual scheduler sends weights with the arm's next call; they load at that episode boundary, a
    call naming the version the arm holds keeps it, and weights queued for another version are dropped."""
    from actors.robot_actor import ActorSettings, RobotWorker

    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    first, second = (deployment(checkpoint, version, {}) for version in ("v-first", "v-second"))
    worker = RobotWorker(
        ActorSettings(robot=sim_arm(SIM), store_url=str(tmp_path / "store"), task="box_assembly")
    )
    try:
        (a,) = worker.run_episodes("eval", round=1, seeds=[1], policy=first)
        worker.set_policy(second)  # queued, as the pipeline's deploy stage does between episodes
        (b,) = worker.run_episodes("eval", round=1, seeds=[2], policy=first)
        (c,) = worker.run_episodes("eval", round=1, seeds=[3], policy=second)
        (d,) = worker.run_episodes("eval", round=1, seeds=[4])
    finally:
        worker.close()
    assert [s["policy_version"] for s in (a, b, c, d)] == ["v-first", "v-first", "v-second", "v-second"]
    store = ReplayStore.open(str(tmp_path / "store"))
    assert [store.record(s["episode_id"]).meta.policy_version for s in (a, b, c, d)] == [
        "v-first", "v-first", "v-second", "v-second",
    ]  # fmt: skip
