"""An arm's actor with its operator console served for real (uvicorn on loopback): the operator's word over HTTP
ends an episode and gives its outcome, which lands in the store; no terminal is involved."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import numpy as np

from replay import Outcome, ReplayStore
from robot_io import LeRobotArmConfig, RobotConfig, SimBoxConfig

TOKEN = "night-shift"


def wait_for_state(client: httpx.Client, state: str, min_steps: int = 0, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        snapshot = client.get("/api/state").json()
        if snapshot["state"] == state and snapshot["episode"]["steps"] >= min_steps:
            return snapshot
        time.sleep(0.005)
    raise AssertionError(f"the arm never reached state {state!r}")


def test_the_operator_ends_an_episode_and_labels_it_through_the_console(
    tmp_path, start_arm, operator_settings
):
    robot = RobotConfig(type="sim_box", name="sim0", sim_box=SimBoxConfig(image_height=32, image_width=32))
    settings = operator_settings(robot, TOKEN)
    arm = start_arm(settings, "demo", [3])
    urls = [arm.worker.info()["console_url"]]
    url = urls[0]
    assert url.startswith("http://127.0.0.1:") and url.endswith(f"?token={TOKEN}")
    base = url.split("/?")[0]
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        assert httpx.get(f"{base}/api/state").status_code == 401
        running = wait_for_state(client, "running", min_steps=5)
        assert client.post("/api/end_episode").status_code == 200
        asking = wait_for_state(client, "labelling")
        assert asking["asking_about"] == running["episode"]["episode_id"]
        assert client.get("/api/frame/front").headers["content-type"] == "image/jpeg"
        reply = client.post("/api/outcome", json={"episode_id": asking["asking_about"], "outcome": "failure"})
        assert reply.status_code == 200
        arm.join()
    (summary,) = arm.done
    assert summary["outcome"] == "failure" and summary["steps"] < robot.sim_box.max_steps
    meta = ReplayStore.open(settings.store_url).record(summary["episode_id"]).meta
    assert meta.outcome is Outcome.FAILURE and meta.labelled_by == "operator-console"
    assert meta.length == summary["steps"]


def test_a_leader_arm_records_round_0_demonstrations_started_and_ended_from_the_console(
    tmp_path, start_arm, operator_settings
):
    """A LeRobot arm (the simulator behind LeRobot's Robot API) with a leader arm and no scripted demonstrator: the
    operator confirms the reset, drives the leader, ends the episode and labels it, all through the console."""
    helpers = str(Path(__file__).parents[1] / "robot_io")
    if helpers not in sys.path:
        sys.path.insert(0, helpers)
    import sim_lerobot

    device = sim_lerobot.VivarlSimArm(sim_lerobot.VivarlSimArmConfig(calibration_dir=tmp_path))
    joints = [name.removesuffix(".pos") for name in device.action_features]
    low, high = device.sim.spec.action_low, device.sim.spec.action_high
    lerobot = LeRobotArmConfig(
        robot_type=sim_lerobot.SIM_ROBOT_TYPE,
        robot_kwargs={
            "id": "arm0",
            "calibration_dir": str(tmp_path),
            "render_height": 32,
            "render_width": 32,
        },
        teleop_type=sim_lerobot.LEADER_TYPE,
        teleop_kwargs={"id": "leader", "calibration_dir": str(tmp_path), "joints": joints},
        action_low=low.tolist(),
        action_high=high.tolist(),
        max_action_delta=[],
        control_hz=30.0,
        image_height=32,
        image_width=32,
    )
    robot = RobotConfig(type="lerobot", name="arm0", lerobot=lerobot, max_episode_steps=10_000)
    settings = operator_settings(robot, TOKEN)
    pose = ((low + high) / 2).astype(np.float32)  # where the operator holds the leader: inside the limits

    def hold_the_leader(worker) -> None:
        leader = worker.corrector.teleop
        leader.pose.update({f"{joint}.pos": float(v) for joint, v in zip(joints, pose, strict=True)})

    arm = start_arm(settings, "demo", [0], prepare=hold_the_leader)
    base = arm.console_base
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        waiting = wait_for_state(client, "waiting for reset")
        assert waiting["episode"]["steps"] == 0  # nothing moves before the operator says the scene is ready
        assert waiting["next_purpose"] == "demo"  # the console tells the operator to drive the leader
        assert client.post("/api/reset_done").status_code == 200
        running = wait_for_state(client, "running", min_steps=8)
        assert running["episode"]["purpose"] == "demo"
        assert client.post("/api/end_episode").status_code == 200
        asking = wait_for_state(client, "labelling")
        client.post("/api/outcome", json={"episode_id": asking["asking_about"], "outcome": "success"})
        arm.join()
    (summary,) = arm.done
    assert summary["purpose"] == "demo" and summary["outcome"] == "success" and summary["steps"] >= 8
    store = ReplayStore.open(settings.store_url)
    record = store.record(summary["episode_id"])
    assert record.meta.purpose == "demo" and record.meta.round == 0
    episode = store.read_episode(summary["episode_id"])
    # The safety layer's rate limit walks the arm to the leader over the first step; then it follows the leader.
    actions = episode["action"]
    np.testing.assert_allclose(actions[1:], np.broadcast_to(pose, actions[1:].shape), atol=1e-5)
    assert np.all(actions >= low - 1e-6) and np.all(actions <= high + 1e-6)
    assert not episode["intervention"].any()  # a demonstration, not a correction
