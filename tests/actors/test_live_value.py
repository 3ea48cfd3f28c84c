"""Live value: scores reach the console's channel off the control thread, and a falling value asks for a takeover
(once per fall) while a clean, rising episode never does."""

from __future__ import annotations

import time

import numpy as np
import pytest

from actors.live_value import HelpRule, LiveValue, LiveValueConfig
from actors.operator import OperatorChannel
from robot_io.spec import Observation
from valuemodel.targets import episode_value_targets


def test_the_rule_asks_once_per_fall_and_never_on_a_rising_curve():
    expert = episode_value_targets(120, True, 200)  # a clean success: the value rises to the end
    rule = HelpRule(drop=0.3, window_s=2.0)
    assert not any(rule.update(t / 10, float(v)) for t, v in enumerate(expert))
    # A drop (the item falls) then a recovery, then a second fall: asked exactly at each fall's first score.
    curve = [0.0, 0.1, 0.2, -0.2, -0.3, -0.3, 0.1, 0.2, 0.25, -0.2]
    rule = HelpRule(drop=0.3, window_s=2.0)
    assert [rule.update(t / 4, v) for t, v in enumerate(curve)] == [
        False, False, False, True, False, False, False, False, False, True,
    ]  # fmt: skip


def test_scores_of_the_running_episode_reach_the_channel_with_the_request():
    channel = OperatorChannel("arm0")
    values = iter([0.2, 0.25, 0.3, -0.4, -0.4, -0.4] + [-0.4] * 100)
    live = LiveValue(channel, lambda images, state: next(values), LiveValueConfig(rate_hz=200.0, drop=0.5))
    try:
        channel.episode_started("ep-1", "rollout", "v1")
        for step in range(8):
            channel.observe(
                Observation({}, np.full(1, step, np.float32), 0.0), intervention=False, held=False
            )
            deadline = time.monotonic() + 5.0
            while len(channel.values) <= step and time.monotonic() < deadline:
                time.sleep(0.001)
        scored = [v for _, v in channel.values]
        assert scored[:4] == pytest.approx([0.2, 0.25, 0.3, -0.4])
        assert len(channel.help_steps) == 1  # the fall from 0.3 to -0.4 asked once
        assert channel.snapshot()["help_steps"] == channel.help_steps
    finally:
        live.stop()


def test_an_arm_scores_its_episodes_with_the_value_checkpoint_it_is_sent(tmp_path):
    from actors.console import ConsoleConfig
    from actors.robot_actor import ActorSettings, RobotWorker
    from actors.weights import pack_checkpoint
    from learners.value_learner import ValueLearner, ValueLearnerConfig
    from replay import ReplayStore
    from robot_io import RobotConfig, SimBoxConfig
    from valuemodel import ValueModelConfig
    from valuemodel.checkpoint import version_dir

    url = str(tmp_path / "replay")
    robot = RobotConfig(
        type="sim_box",
        name="sim0",
        sim_box=SimBoxConfig(cameras=["front", "wrist"], image_height=32, image_width=32),
    )
    settings = ActorSettings(
        robot, url, "box_assembly", console=ConsoleConfig(enabled="on", port=0, token="t"),
        live_value=LiveValueConfig(rate_hz=50.0),
    )  # fmt: skip
    worker = RobotWorker(settings)
    try:
        worker.run_episodes("demo", 0, [0, 1])
        config = ValueLearnerConfig(
            store_url=url, checkpoint_root=str(tmp_path / "value"), steps=4, batch_size=4, warmup_steps=1,
            checkpoint_every=0, task_names=["box_assembly"], log_every=0, device="cpu",
        )  # fmt: skip
        model = ValueModelConfig.preset(
            "tiny", "static", image_height=32, image_width=32, tasks=["box assembly"]
        )
        version = ValueLearner(config, model).refit(0)
        assert worker.set_value_model(pack_checkpoint(version_dir(config.checkpoint_root, version), "v1"))
        (summary,) = worker.run_episodes("demo", 0, [2])
        assert worker.channel.values, "no live value was scored during the episode"
        assert all(-1.0 <= v <= 1.0 for _, v in worker.channel.values)
        column = ReplayStore.open(url).read_derived("help_request", "live-value", summary["episode_id"])
        assert (column is not None) and len(column) == summary["steps"]
        assert column.sum() == len(set(worker.channel.help_steps))
    finally:
        worker.close()
