"""Asynchronous action chunks: the control thread never waits on inference, late and old plans are dropped, and
overlapping chunks merge by the configured rule.

Inference here is gated by the test (an Event), so what the control thread does while a chunk is being predicted
is decided by the test, not by how fast this machine happens to be.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from policy_helpers import fake_observation, tiny_config, unit_normalizer

from policy.async_chunks import AsyncChunkPolicy, InferenceConfig, _Planned, merge_planned
from policy.builtin import BuiltinPolicyModel
from policy.deploy import Policy
from policy.factory import build_model

CHUNK = 6


class GatedPolicy:
    """A Policy stand-in whose chunk for an observation taken at step t is [t, t+1, ...] (one action dim), and
    whose every prediction waits until the test opens the gate."""

    def __init__(self) -> None:
        self.config = tiny_config(chunk_size=CHUNK, execute_steps=CHUNK)
        self.version = 1
        self.gate = threading.Event()
        self.started = threading.Event()
        self.predicted: list[float] = []

    def reset(self, seed=None) -> None:
        pass

    def predict_chunks(self, observations):
        self.started.set()
        assert self.gate.wait(10.0), "the test never opened the gate"
        step = float(observations[0].state[0])
        self.predicted.append(step)
        return (step + np.arange(CHUNK, dtype=np.float32))[None, :, None]


def observation_at(step: int):
    obs = fake_observation(tiny_config())
    obs.state[0] = step
    return obs


def wait_until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the worker never finished"
        time.sleep(0.001)


def test_the_control_thread_holds_instead_of_waiting_and_drops_the_steps_that_passed():
    gated = GatedPolicy()
    runner = AsyncChunkPolicy(gated, InferenceConfig(mode="async", merge="latest", warmup=False))
    try:
        runner.reset(0)
        # Inference is stuck: every step still returns at once, as a hold.
        done = threading.Event()

        def control_steps() -> None:
            for step in range(4):
                assert runner.act(observation_at(step)) is None
            done.set()

        thread = threading.Thread(target=control_steps)
        thread.start()
        thread.join(timeout=10.0)
        assert done.is_set(), "act waited on inference"
        assert runner.stats.holds == 4
        gated.gate.set()
        wait_until(runner.ready)
        # The chunk was planned from step 0's observation; steps 0-3 have passed, so step 4 gets its 5th action.
        assert runner.act(observation_at(4))[0] == pytest.approx(4.0)
        assert runner.act(observation_at(5))[0] == pytest.approx(5.0)
        assert gated.predicted[0] == 0.0
    finally:
        runner.close()


def test_a_chunk_older_than_the_age_limit_is_dropped():
    now = [0.0]
    gated = GatedPolicy()
    runner = AsyncChunkPolicy(
        gated, InferenceConfig(mode="async", max_chunk_age_s=0.5, warmup=False), clock=lambda: now[0]
    )
    try:
        runner.reset(0)
        assert runner.act(observation_at(0)) is None
        now[0] = 0.8  # the prediction took longer than the age limit
        gated.gate.set()
        wait_until(runner.ready)
        assert runner.act(observation_at(1)) is None
        assert runner.stats.chunks_too_old == 1
        # The next chunk (asked for at step 1, on time) is used.
        wait_until(runner.ready)
        assert runner.act(observation_at(2))[0] == pytest.approx(2.0)
    finally:
        runner.close()


def test_a_takeover_discards_the_chunk_being_predicted():
    gated = GatedPolicy()
    runner = AsyncChunkPolicy(gated, InferenceConfig(mode="async", warmup=False))
    try:
        runner.reset(0)
        assert runner.act(observation_at(0)) is None  # asks for a chunk from step 0
        assert gated.started.wait(10.0)
        runner.discard_plan()  # the corrector takes over while it is predicted
        gated.gate.set()
        wait_until(lambda: gated.predicted)
        time.sleep(0.01)
        assert not runner.ready()  # planned before the takeover: never used
        assert runner.act(observation_at(7)) is None  # hand-back: plans afresh from here
        wait_until(runner.ready)
        assert gated.predicted[-1] == 7.0
    finally:
        runner.close()


def planned(steps, values, observed_at=0.0):
    return [
        _Planned(s, np.array([v], dtype=np.float32), observed_at) for s, v in zip(steps, values, strict=True)
    ]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("latest", [10.0, 10.0, 10.0, 10.0, 10.0]),
        ("average", [5.0, 5.0, 5.0, 10.0, 10.0]),
        # One committed action, then the new chunk's weight rises 1/3, 2/3 over the rest of the overlap.
        ("rtc", [0.0, 10.0 / 3, 20.0 / 3, 10.0, 10.0]),
    ],
)
def test_merge_rules(rule, expected):
    queued = planned([5, 6, 7], [0.0, 0.0, 0.0])
    new = planned([5, 6, 7, 8, 9], [10.0] * 5, observed_at=1.0)
    merged = merge_planned(queued, new, InferenceConfig(merge=rule, average_weight=0.5, rtc_commit_steps=1))
    assert [p.step for p in merged] == [5, 6, 7, 8, 9]
    np.testing.assert_allclose([p.action[0] for p in merged], expected, atol=1e-6)


@pytest.mark.parametrize(
    ("kind", "cfg_beta"), [("builtin", 1.0), ("builtin", 2.0), ("act", 1.5), ("diffusion", 1.5)]
)
def test_every_policy_kind_runs_asynchronously_with_the_synchronous_chunks(kind, cfg_beta):
    from test_lerobot_policies import TINY

    overrides = {"lerobot_overrides": TINY[kind]} if kind != "builtin" else {"head": "flow"}
    config = tiny_config(kind=kind, cfg_beta=cfg_beta, **overrides)
    model = build_model(config)
    assert isinstance(model, BuiltinPolicyModel) == (kind == "builtin")
    policy = Policy(model, unit_normalizer(config))
    reference = Policy(build_model(config), unit_normalizer(config))
    reference.model.load_state_dict(model.state_dict())
    obs = fake_observation(config)
    reference.reset(3)
    expected = reference.predict_chunks([obs])[0]
    runner = AsyncChunkPolicy(policy, InferenceConfig(mode="async"))
    try:
        runner.reset(3)
        assert runner.act(obs) is None
        wait_until(runner.ready)
        # The chunk arrived at step 1: its second action is this step's, as the synchronous policy planned it.
        np.testing.assert_allclose(runner.act(obs), expected[1], rtol=1e-5, atol=1e-5)
    finally:
        runner.close()


def test_auto_is_asynchronous_on_paced_arms_only():
    assert InferenceConfig().is_async(paced=True) and not InferenceConfig().is_async(paced=False)
    assert InferenceConfig(mode="sync").is_async(paced=True) is False
    with pytest.raises(ValueError, match="inference.merge must be one of"):
        InferenceConfig(merge="blend")
