"""The operator console's HTTP API and websocket, against the channel an episode loop uses and a real store."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from actors.console import ConsoleConfig, console_app
from actors.operator import LABELLING, RUNNING, ConsoleOutcome, OperatorChannel
from replay import Outcome, ReplayStore, StoreSchema
from replay.schema import CameraSchema
from robot_io.spec import Observation

TOKEN = "s3cret-token"
SCHEMA = StoreSchema(
    cameras=(CameraSchema("front", 8, 8),), state_names=("q",), action_names=("q",), control_hz=10.0
)


def committed_episode(store: ReplayStore, robot: str, outcome: Outcome) -> str:
    with store.episode_writer(
        robot_id=robot, round=0, policy_version="v1", task="t", purpose="rollout"
    ) as writer:
        for t in range(3):
            writer.add_step({"front": np.zeros((8, 8, 3), np.uint8)}, np.zeros(1), np.zeros(1), float(t))
        writer.commit(outcome, labelled_by=None)
    return writer.episode_id


@pytest.fixture
def console(tmp_path):
    store = ReplayStore.create(str(tmp_path / "replay"), SCHEMA)
    channel = OperatorChannel("arm0")
    client = TestClient(console_app(channel, TOKEN, store=store))
    return client, channel, store


def auth(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_requests_without_the_token_or_with_a_wrong_one_are_refused_and_change_nothing(console):
    client, channel, store = console
    episode = committed_episode(store, "arm0", Outcome.UNLABELLED)
    body = {"episode_id": episode, "outcome": "success"}
    assert client.post("/api/outcome", json=body).status_code == 401
    assert client.post("/api/outcome", json=body, headers=auth("guess")).status_code == 403
    assert client.post("/api/outcome?token=guess", json=body).status_code == 403
    assert client.post("/api/pause", json={"on": True}).status_code == 401
    assert client.get("/").status_code == 401 and client.get("/api/state").status_code == 401
    assert store.record(episode, reload=True).meta.outcome is Outcome.UNLABELLED
    assert not channel.paused()
    # The websocket is closed before it is accepted.
    with pytest.raises(WebSocketDisconnect), client.websocket_connect("/ws?token=guess") as socket:
        socket.receive_json()


def test_the_operator_labels_the_episode_being_asked_about(console):
    client, channel, _ = console
    channel.episode_started("ep-1", "rollout", "v3")
    answered: list[tuple[str, str | None]] = []
    labeller = ConsoleOutcome(channel, timeout_s=10.0)
    asking = threading.Thread(target=lambda: answered.append(labeller.label(None, "ep-1")))
    asking.start()
    while channel.snapshot()["state"] != LABELLING:
        pass
    reply = client.post("/api/outcome", json={"episode_id": "ep-1", "outcome": "failure"}, headers=auth())
    asking.join(timeout=10.0)
    assert reply.status_code == 200 and reply.json()["written"] == "with the episode"
    assert answered == [("failure", "operator-console")]


def test_a_late_answer_labels_the_committed_episode_and_it_leaves_the_unlabelled_list(console):
    client, channel, store = console
    late = committed_episode(store, "arm0", Outcome.UNLABELLED)
    committed_episode(store, "arm1", Outcome.UNLABELLED)  # another arm's: not on this console
    assert ConsoleOutcome(channel, timeout_s=0.01).label(None, late) == ("unlabelled", None)
    listed = client.get("/api/unlabelled", headers=auth()).json()
    assert [e["episode_id"] for e in listed] == [late]
    reply = client.post(f"/api/outcome?token={TOKEN}", json={"episode_id": late, "outcome": "success"})
    assert reply.json()["written"] == "to the committed episode"
    meta = store.record(late, reload=True).meta
    assert meta.outcome is Outcome.SUCCESS and meta.labelled_by == "operator-console"
    assert client.get("/api/unlabelled", headers=auth()).json() == []
    bad = client.post("/api/outcome", json={"episode_id": late, "outcome": "maybe"}, headers=auth())
    assert bad.status_code == 422
    missing = client.post("/api/outcome", json={"episode_id": "nope", "outcome": "success"}, headers=auth())
    assert missing.status_code == 404


def test_end_pause_reset_and_the_live_state(console):
    client, channel, _ = console
    channel.episode_started("ep-2", "rollout", "v1")
    frame = np.full((8, 8, 3), 90, np.uint8)
    channel.observe(
        Observation({"front": frame}, np.zeros(1, np.float32), 0.0), intervention=True, held=False
    )
    with client.websocket_connect(f"/ws?token={TOKEN}") as socket:
        live = socket.receive_json()
    assert (
        live["state"] == RUNNING and live["episode"]["steps"] == 1 and live["episode"]["interventions"] == 1
    )
    image = client.get("/api/frame/front", headers=auth())
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    client.post("/api/pause", json={"on": True}, headers=auth())
    assert channel.paused()
    client.post("/api/end_episode", headers=auth())
    assert channel.end_requested()
    waiting = threading.Thread(target=lambda: channel.wait_for_reset(10.0))
    waiting.start()
    client.post("/api/reset_done", headers=auth())
    waiting.join(timeout=10.0)
    assert not waiting.is_alive()
    assert client.post("/api/takeover", json={"on": True}, headers=auth()).status_code == 409  # no teleop
    assert "Success (s)" in client.get(f"/?token={TOKEN}").text


def test_the_token_file_is_made_once_and_private(tmp_path):
    config = ConsoleConfig(token_file=str(tmp_path / "dir" / "token"))
    token = config.resolve_token()
    assert len(token) > 20 and config.resolve_token() == token
    assert (tmp_path / "dir" / "token").stat().st_mode & 0o077 == 0


def test_an_answer_given_while_the_episode_runs_labels_it_when_it_ends(console):
    client, channel, _ = console
    channel.episode_started("ep-3", "rollout", "v1")
    reply = client.post("/api/outcome", json={"episode_id": "ep-3", "outcome": "success"}, headers=auth())
    assert reply.json()["written"] == "with the episode"
    assert ConsoleOutcome(channel, timeout_s=0.01).label(None, "ep-3") == ("success", "operator-console")


def test_another_arms_episode_cannot_be_relabelled_here(console):
    client, _, store = console
    theirs = committed_episode(store, "arm1", Outcome.SUCCESS)
    reply = client.post("/api/outcome", json={"episode_id": theirs, "outcome": "failure"}, headers=auth())
    assert reply.status_code == 403
    assert store.record(theirs, reload=True).meta.outcome is Outcome.SUCCESS
