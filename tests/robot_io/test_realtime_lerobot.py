"""A paced LeRobot arm (LeRobot's Robot API over the simulator, 30 Hz, with a camera's frame wait) whose policy
needs two control periods per chunk: inference runs off the control thread, which keeps stepping, holding the arm
only while no action is planned yet. (How late steps are is measured in benchmarks/bench_actors.py: tests do not
assert on wall-clock time.)"""

from __future__ import annotations

import threading
import time

from actors.episode import run_episode
from policy import Normalizer, PolicyConfig, build_model
from policy.async_chunks import AsyncChunkPolicy, InferenceConfig
from policy.deploy import Policy
from robot_io import SafeRobot, SafetyConfig
from robot_io.lerobot_adapter import make_lerobot_robot

HZ = 30.0
STEPS = 30


class TwoPeriodPolicy(Policy):
    """The built-in policy with every chunk taking two control periods; records which thread predicted."""

    threads: list[str]

    def predict_chunks(self, observations, token=None):
        self.threads.append(threading.current_thread().name)
        time.sleep(2.0 / HZ)
        return super().predict_chunks(observations, token)


def test_a_slow_policy_never_blocks_the_paced_control_loop(arm_config) -> None:
    config = arm_config(camera_latency_s=0.005)
    config.control_hz = HZ
    arm = make_lerobot_robot(config)
    robot = SafeRobot(arm, SafetyConfig(watchdog_timeout_s=0.5))
    names = arm.spec.action_names
    policy_config = PolicyConfig(
        cameras=["front", "wrist"], image_size=32, state_dim=0, action_dim=0, relative_action_dims=[]
    ).with_robot_spec(arm.spec.camera_names, arm.spec.state_names, names)
    unit = {"mean": [0.0] * len(names), "std": [1.0] * len(names)}
    policy = TwoPeriodPolicy(build_model(policy_config), Normalizer({"state": unit, "action": unit}))
    policy.threads = []
    source = AsyncChunkPolicy(policy, InferenceConfig(mode="async"))
    # Its warm-up prediction ran here, when the policy was loaded (between episodes, on the loading thread).
    assert policy.threads == ["MainThread"]
    policy.threads.clear()
    try:
        with robot:
            device = arm.robot
            reads, writes = device.reads, device.writes
            result = run_episode(robot, source, max_steps=STEPS, seed=0, realtime=True)
    finally:
        source.close()
    # Every control step is one action sent; the held ones are not recorded.
    assert result.steps + result.inference_holds == STEPS
    assert policy.threads and all(name == "vivarl-chunk-inference" for name in policy.threads)
    # The first chunk cannot be ready at step 0: the arm is held, not the loop.
    assert 1 <= result.inference_holds < STEPS and source.stats.chunks >= 1
    assert device.reads - reads == STEPS + 1 and device.writes - writes == STEPS
    assert robot.stats.watchdog_holds == 0  # every step commanded the arm in time for the watchdog
