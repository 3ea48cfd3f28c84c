"""An arm's actor with its operator console served for real (uvicorn on loopback): the operator's word over HTTP
ends an episode and gives its outcome, which lands in the store; no terminal is involved."""

from __future__ import annotations

import threading
import time

import httpx

from actors.console import ConsoleConfig
from actors.robot_actor import ActorSettings, RobotWorker
from replay import Outcome, ReplayStore
from robot_io import RobotConfig, SimBoxConfig

TOKEN = "night-shift"


def wait_for_state(client: httpx.Client, state: str, min_steps: int = 0, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        snapshot = client.get("/api/state").json()
        if snapshot["state"] == state and snapshot["episode"]["steps"] >= min_steps:
            return snapshot
        time.sleep(0.005)
    raise AssertionError(f"the arm never reached state {state!r}")


def test_the_operator_ends_an_episode_and_labels_it_through_the_console(tmp_path):
    robot = RobotConfig(type="sim_box", name="sim0", sim_box=SimBoxConfig(image_height=32, image_width=32))
    settings = ActorSettings(
        robot=robot,
        store_url=str(tmp_path / "replay"),
        task="box_assembly",
        outcome_source="operator",
        outcome_timeout_s=60.0,
        console=ConsoleConfig(port=0, token=TOKEN),
    )
    # The arm's actor lives on one thread, as in Ray (the simulator's GL context belongs to the thread that made it).
    started, done, failed = threading.Event(), [], []
    urls: list[str] = []

    def actor() -> None:
        try:
            worker = RobotWorker(settings)
            urls.append(worker.info()["console_url"])
            started.set()
            try:
                done.extend(worker.run_episodes("demo", 0, [3]))
            finally:
                worker.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failed.append(exc)
            started.set()

    thread = threading.Thread(target=actor)
    thread.start()
    assert started.wait(60.0) and not failed, failed
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
        thread.join(timeout=60.0)
    assert not failed, failed
    (summary,) = done
    assert summary["outcome"] == "failure" and summary["steps"] < robot.sim_box.max_steps
    meta = ReplayStore.open(settings.store_url).record(summary["episode_id"]).meta
    assert meta.outcome is Outcome.FAILURE and meta.labelled_by == "operator-console"
    assert meta.length == summary["steps"]
