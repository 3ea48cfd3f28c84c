"""Round 0 and round 1 on a real-arm path (slow: minutes): the `vivarl` command drives a LeRobot arm (LeRobot's
Robot API over the simulator, loaded with ``lerobot.import_modules`` like a lab's own robot class) that has no
demonstrator. Round 0 starts from demonstrations recorded elsewhere and imported from a LeRobotDataset; every
outcome and every "reset done" comes from the operator console's HTTP API, as an operator's clicks would; the arm
is paced at its control rate with chunks predicted off the control thread.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from actors.collect import collect_episode
from actors.episode import TeleoperatorAsPolicy
from improve.collection import committed_episodes
from improve.run_state import STAGES, RunState
from replay import Outcome, ReplayStore, StoreSchema
from replay.lerobot_io import SIDECAR, export_to_lerobot, import_from_lerobot
from robot_io import LeRobotArmConfig, RobotConfig, SafetyConfig, make_robot

pytestmark = pytest.mark.slow
VIVARL = str(Path(sys.executable).with_name("vivarl"))
HELPERS = str(Path(__file__).parents[1] / "robot_io")
TOKEN = "e2e-console-token"
SIZE = 32


def arm_config(calibration_dir: Path) -> LeRobotArmConfig:
    if HELPERS not in sys.path:
        sys.path.insert(0, HELPERS)
    import sim_lerobot

    device = sim_lerobot.VivarlSimArm(sim_lerobot.VivarlSimArmConfig(calibration_dir=calibration_dir))
    low, high = device.sim.spec.action_low.tolist(), device.sim.spec.action_high.tolist()
    return LeRobotArmConfig(
        robot_type=sim_lerobot.SIM_ROBOT_TYPE,
        import_modules=["sim_lerobot"],
        robot_kwargs={
            "id": "arm0",
            "calibration_dir": str(calibration_dir),
            "render_height": SIZE,
            "render_width": SIZE,
        },
        teleop_type="",
        action_low=low,
        action_high=high,
        control_hz=30.0,
        image_height=SIZE,
        image_width=SIZE,
    )


class RecordedAsSuccess:
    """The person recording says each demonstration succeeded."""

    def label(self, final_observation, episode_id):
        return "success", "operator"


def record_teleop_demos(lerobot: LeRobotArmConfig, url: str, count: int) -> None:
    """Demonstrations recorded on the same kind of arm elsewhere (the scripted expert stands in for the leader)."""
    from robot_io.sim import ScriptedExpert

    robot = make_robot(
        RobotConfig(type="lerobot", name="arm0", lerobot=lerobot, safety=SafetyConfig(watchdog_timeout_s=0))
    )
    robot.connect()
    store = ReplayStore.open_or_create(url, StoreSchema.from_robot_spec(robot.spec))
    expert = TeleoperatorAsPolicy(ScriptedExpert(robot.inner.robot.sim, demo=True))
    for seed in range(count):
        collect_episode(
            robot, expert, store, RecordedAsSuccess(), robot_id="teleop", task="box_assembly", round=0, policy_version="teleop",
            purpose="demo", max_steps=260, seed=seed,
        )  # fmt: skip
    robot.disconnect()


def answer_the_console(url_holder: list[str], stop: threading.Event, answers: list[str]) -> None:
    """The operator: confirms every reset and labels every episode, success and failure in turn."""
    while not url_holder and not stop.is_set():
        time.sleep(0.05)
    if stop.is_set():
        return
    base = url_holder[0].split("/?")[0]
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10.0) as client:
        while not stop.is_set():
            try:
                state = client.get("/api/state").json()
            except httpx.HTTPError:
                time.sleep(0.1)
                continue
            if state["state"] == "waiting for reset":
                client.post("/api/reset_done")
            elif state["state"] == "labelling":
                outcome = "success" if len(answers) % 2 == 0 else "failure"
                client.post("/api/outcome", json={"episode_id": state["asking_about"], "outcome": outcome})
                answers.append(outcome)
            time.sleep(0.02)


def test_a_lerobot_arm_without_a_demonstrator_goes_through_rounds_0_and_1_from_the_console(tmp_path):
    lerobot = arm_config(tmp_path / "calibration")
    scratch, dataset, run_dir = str(tmp_path / "teleop"), tmp_path / "dataset", tmp_path / "run"
    record_teleop_demos(lerobot, scratch, count=4)
    export_to_lerobot(scratch, dataset, repo_id="lab/teleop")
    (dataset / SIDECAR).unlink()  # as LeRobot's own recording tools leave it: no vivarl metadata
    imported = import_from_lerobot(dataset, str(run_dir / "replay"), repo_id="lab/teleop")
    assert len(imported) == 4

    overrides = [
        f"run_dir={run_dir}",
        "~robot@robots.sim0",
        "~robot@robots.sim1",
        "+robot@robots.arm0=so101",
        f"robots.arm0.lerobot.robot_type={lerobot.robot_type}",
        "robots.arm0.lerobot.import_modules=[sim_lerobot]",
        # The SO-101 preset's kwargs (port, cameras, max_relative_target) make way for the simulated arm's.
        "~robots.arm0.lerobot.robot_kwargs.port",
        "~robots.arm0.lerobot.robot_kwargs.cameras",
        "~robots.arm0.lerobot.robot_kwargs.max_relative_target",
        *(f"++robots.arm0.lerobot.robot_kwargs.{k}={v}" for k, v in lerobot.robot_kwargs.items()),
        "robots.arm0.lerobot.teleop_type=",
        f"robots.arm0.lerobot.action_low={lerobot.action_low}",
        f"robots.arm0.lerobot.action_high={lerobot.action_high}",
        "robots.arm0.lerobot.max_action_delta=[]",
        f"robots.arm0.lerobot.image_height={SIZE}",
        f"robots.arm0.lerobot.image_width={SIZE}",
        "robots.arm0.models.relative_actions=[ee_x.pos,ee_y.pos,ee_z.pos]",
        "robots.arm0.max_episode_steps=40",
        "loop.outcome_source=operator",
        "loop.outcome_timeout_s=120",
        f"console.token={TOKEN}",
        "console.port=0",
        "loop.rounds=1",
        "loop.demo_episodes=4",
        "loop.episodes_per_round=2",
        "loop.eval_episodes=2",
        "valuemodel=static",
        "value_learner.steps=20",
        "value_learner.warm_start_steps=10",
        "policy_learner.steps=30",
        "wandb.mode=offline",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([HELPERS, os.environ.get("PYTHONPATH", "")]),
        "WANDB_MODE": "offline",
    }
    proc = subprocess.Popen(
        [VIVARL, *overrides], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )  # fmt: skip
    urls: list[str] = []
    answers: list[str] = []
    stop = threading.Event()
    operator = threading.Thread(target=answer_the_console, args=(urls, stop, answers), daemon=True)
    operator.start()
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            found = re.search(r"operator console for arm arm0: (http://\S+)", line)
            if found:
                urls.append(found.group(1))
        proc.wait(timeout=900)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
    out = "".join(lines)
    assert proc.returncode == 0, out[-4000:]
    assert urls, "the driver printed no console address"
    state = RunState.load(run_dir)
    assert all(state.is_done(r, stage) for r in (0, 1) for stage in STAGES), state.completed
    store = ReplayStore.open(str(run_dir / "replay"))
    demos = committed_episodes(store, 0, "demo")
    assert sorted(r.meta.episode_id for r in demos) == sorted(imported)  # nothing recollected
    labelled = [r for p in ("eval", "rollout") for k in (0, 1) for r in committed_episodes(store, k, p)]
    assert len(labelled) == 6 == len(answers)
    assert {r.meta.labelled_by for r in labelled} == {"operator-console"}
    assert {r.meta.outcome for r in labelled} == {Outcome.SUCCESS, Outcome.FAILURE}
    assert "round table" in out.lower() or "vivarl run" in out
