"""The operator console: a small web app on each arm's node, where the person at the arm sees the episode and
gives their word (success or failure, end the episode, the scene is reset, pause, take over).

FastAPI on uvicorn, one page of plain HTML and JavaScript, and a websocket that pushes the arm's state a few times
a second; camera frames are JPEG-encoded only when the page asks for one. Every request and the websocket need the
console's token (``Authorization: Bearer <token>`` or ``?token=``): none gives 401, a wrong one 403, and neither
changes anything. It binds to loopback unless told otherwise, so by default only someone at the arm's machine
reaches it. It runs inside the arm's actor, on the node wired to the arm, the same on a local Ray and on a
``ray up`` cluster: nothing reads a terminal.

Outcomes given for the episode being labelled answer the episode loop's question; outcomes for an episode already
committed (unanswered in time, or a correction) are written to the store.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel
from starlette.requests import HTTPConnection

from actors.operator import OperatorChannel

log = logging.getLogger(__name__)


class OutcomeBody(BaseModel):
    episode_id: str
    outcome: str


class SwitchBody(BaseModel):
    on: bool


@dataclass
class ConsoleConfig:
    """Where each arm's operator console listens, and how it authenticates."""

    # "auto": on for arms whose outcomes an operator gives (loop.outcome_source=operator); "on" or "off".
    enabled: str = "auto"
    # Loopback by default: exposing an arm's controls on the network is an explicit choice.
    host: str = "127.0.0.1"
    # The first arm on a node takes this port; the next free one above it is used when it is taken. 0: any.
    port: int = 8765
    # The token every request needs. Empty: read from token_file, which is created (mode 600) with a random token
    # on first use, so that the console's address stays the same across actor restarts.
    token: str = ""
    token_file: str = "~/.vivarl/console_token"
    # Before each episode on a real arm, wait for the operator's "reset done" (the simulator resets itself).
    confirm_reset: bool = True
    # How long to wait for it (0: as long as it takes; the arm holds meanwhile).
    reset_timeout_s: float = 0.0

    def __post_init__(self) -> None:
        if self.enabled not in ("auto", "on", "off"):
            raise ValueError(f"console.enabled must be auto, on or off, got {self.enabled!r}")

    def is_enabled(self, outcome_source: str) -> bool:
        return self.enabled == "on" or (self.enabled == "auto" and outcome_source == "operator")

    def resolve_token(self) -> str:
        if self.token:
            return self.token
        path = Path(self.token_file).expanduser()
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(24)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return _read_when_written(path)  # another arm's actor on this node made it just now
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token


def _read_when_written(path: Path) -> str:
    import time

    for _ in range(50):
        token = path.read_text().strip()
        if token:
            return token
        time.sleep(0.02)
    raise RuntimeError(f"the console token file {path} stays empty: delete it and start again")


def console_app(channel: OperatorChannel, token: str, *, store: Any = None, teleop: Any = None) -> Any:
    """The FastAPI app of one arm's console. ``store`` (a ReplayStore) lists and labels committed episodes;
    ``teleop`` (one with ``set_takeover``) lets the operator take over from the page."""

    def given_token(authorization: str | None, query: str | None) -> str | None:
        if authorization and authorization.startswith("Bearer "):
            return authorization.removeprefix("Bearer ").strip()
        return query

    def check(candidate: str | None) -> int | None:
        """None when the token is right, else the HTTP status: 401 missing, 403 wrong."""
        if not candidate:
            return 401
        return None if hmac.compare_digest(candidate.encode(), token.encode()) else 403

    def authorised(request: HTTPConnection) -> None:
        status = check(given_token(request.headers.get("authorization"), request.query_params.get("token")))
        if status is not None:
            raise HTTPException(status, "a valid console token is required (?token=... or a Bearer header)")

    app = FastAPI(title=f"vivarl console: {channel.robot}", docs_url=None, redoc_url=None, openapi_url=None)
    api = APIRouter(dependencies=[Depends(authorised)])

    @api.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.replace("__ROBOT__", channel.robot)

    @api.get("/api/state")
    def state() -> dict:
        return {**channel.snapshot(), "can_take_over": hasattr(teleop, "set_takeover")}

    @api.get("/api/frame/{camera}")
    def frame(camera: str) -> Response:
        import cv2

        observation = channel.observation
        if observation is None or camera not in observation.images:
            raise HTTPException(404, f"no frame from camera {camera!r} yet")
        ok, jpeg = cv2.imencode(".jpg", observation.images[camera][..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise HTTPException(500, "could not encode the frame")
        return Response(jpeg.tobytes(), media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @api.post("/api/outcome")
    def outcome(body: OutcomeBody) -> dict:
        try:
            answered = channel.answer_outcome(body.episode_id, body.outcome)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        if answered:
            return {"episode_id": body.episode_id, "outcome": body.outcome, "written": "with the episode"}
        if store is None:
            raise HTTPException(
                404, f"episode {body.episode_id} is not being labelled and no store is attached"
            )
        record = _committed_record(store, body.episode_id)
        if record is None:
            raise HTTPException(404, f"no committed episode {body.episode_id} in the store")
        if record.meta.robot_id != channel.robot:
            raise HTTPException(
                403, f"episode {body.episode_id} is arm {record.meta.robot_id}'s, not {channel.robot}'s"
            )
        store.set_outcome(body.episode_id, body.outcome, labelled_by="operator-console")
        return {"episode_id": body.episode_id, "outcome": body.outcome, "written": "to the committed episode"}

    @api.get("/api/unlabelled")
    def unlabelled() -> list[dict]:
        if store is None:
            return []
        # Cached commit records (new episodes are read, known ones not again): relabels made here update the cache.
        records = store.records().values()
        return [
            {
                "episode_id": r.meta.episode_id,
                "round": r.meta.round,
                "purpose": r.meta.purpose,
                "steps": r.meta.length,
            }
            for r in records
            if r.meta.outcome.value == "unlabelled" and r.meta.robot_id == channel.robot
        ]

    @api.post("/api/end_episode")
    def end_episode() -> dict:
        channel.request_end()
        return channel.snapshot()

    @api.post("/api/reset_done")
    def reset_done() -> dict:
        channel.confirm_reset()
        return channel.snapshot()

    @api.post("/api/pause")
    def pause(body: SwitchBody) -> dict:
        channel.set_paused(body.on)
        return channel.snapshot()

    @api.post("/api/takeover")
    def takeover(body: SwitchBody) -> dict:
        if teleop is None or not hasattr(teleop, "set_takeover"):
            raise HTTPException(
                409, "this arm has no teleoperator the console can switch (lerobot.teleop_type)"
            )
        teleop.set_takeover(body.on)
        return {**channel.snapshot(), "takeover": body.on}

    app.include_router(api)

    @app.websocket("/ws")
    async def live(socket: WebSocket) -> None:
        status = check(given_token(socket.headers.get("authorization"), socket.query_params.get("token")))
        if status is not None:
            await socket.close(code=1008, reason=f"console token {'missing' if status == 401 else 'wrong'}")
            return
        await socket.accept()
        try:
            while True:
                await socket.send_json(channel.snapshot())
                await asyncio.sleep(0.2)
        except (WebSocketDisconnect, RuntimeError):
            return

    return app


class ConsoleServer:
    """Serve an app with uvicorn on a background thread; ``url`` is where the operator opens it (token included)."""

    def __init__(self, app: Any, host: str, port: int, token: str) -> None:
        import uvicorn

        self.host, self.token = host, token
        self.port = _free_port(host, port)
        self._server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=self.port, log_level="warning", ws="websockets")
        )
        self._thread = threading.Thread(target=self._server.run, name="vivarl-console", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/?token={self.token}"

    def start(self, timeout_s: float = 10.0) -> ConsoleServer:
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout_s / 0.05)):
            if self._server.started:
                return self
            deadline.wait(0.05)
        raise RuntimeError(f"the operator console did not start on {self.host}:{self.port}")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5.0)


def _committed_record(store: Any, episode_id: str, wait_s: float = 3.0) -> Any:
    """The commit record of ``episode_id``, waiting briefly for one that is being committed right now (an answer
    that arrived just after the question timed out); None when there is none."""
    import time

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return store.record(episode_id, reload=True)
        except KeyError:
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)


def _free_port(host: str, first: int) -> int:
    import socket

    for port in [0] if first == 0 else range(first, first + 50):
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise RuntimeError(f"no free port for the operator console on {host} in {first}..{first + 49}")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vivarl: __ROBOT__</title>
<style>
 body{font-family:system-ui,sans-serif;margin:1rem;background:#111;color:#eee}
 #cams img{height:240px;margin-right:.5rem;background:#000}
 button{font-size:1.1rem;margin:.25rem;padding:.5rem 1rem} .big{font-size:1.4rem}
 #state{font-size:1.3rem;margin:.5rem 0} .asking{background:#664;padding:.25rem}
 .help{background:#a22;padding:.25rem} #value{background:#000;margin:.25rem 0}
 table{border-collapse:collapse} td{padding:.1rem .5rem}
</style></head><body>
<h1>vivarl arm <span id="robot">__ROBOT__</span></h1>
<div id="state">connecting...</div>
<div id="cams"></div>
<div><canvas id="value" width="720" height="140" title="live value (model range -1..1)"></canvas></div>
<div>
 <button id="success" class="big" title="s">Success (s)</button>
 <button id="failure" class="big" title="f">Failure (f)</button>
 <button id="end" title="e">End episode (e)</button>
 <button id="reset" title="r">Reset done (r)</button>
 <button id="pause" title="p">Pause (p)</button>
 <button id="takeover" title="t">Take over (t)</button>
</div>
<h2>Unlabelled episodes</h2><table id="unlabelled"></table>
<script>
const token = new URLSearchParams(location.search).get("token") || "";
const headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"};
let last = null, takeover = false;
async function post(path, body) {
  const r = await fetch(path, {method: "POST", headers, body: JSON.stringify(body || {})});
  if (!r.ok) alert(path + ": " + (await r.text()));
  return r;
}
function episodeToLabel() { return last && (last.asking_about || last.episode.episode_id); }
async function label(outcome, id) {
  id = id || episodeToLabel();
  if (id) { await post("/api/outcome", {episode_id: id, outcome}); refreshUnlabelled(); }
}
document.getElementById("success").onclick = () => label("success");
document.getElementById("failure").onclick = () => label("failure");
document.getElementById("end").onclick = () => post("/api/end_episode");
document.getElementById("reset").onclick = () => post("/api/reset_done");
document.getElementById("pause").onclick = () => post("/api/pause", {on: !(last && last.paused)});
document.getElementById("takeover").onclick = () => { takeover = !takeover; post("/api/takeover", {on: takeover}); };
document.addEventListener("keydown", e => {
  const keys = {s: "success", f: "failure", e: "end", r: "reset", p: "pause", t: "takeover"};
  if (keys[e.key]) document.getElementById(keys[e.key]).click();
});
let lastHelp = null;
function beep() {
  try {
    const audio = new AudioContext(), tone = audio.createOscillator();
    tone.frequency.value = 880; tone.connect(audio.destination); tone.start(); tone.stop(audio.currentTime + 0.3);
  } catch (e) {}
}
function plot(values) {
  const c = document.getElementById("value"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  if (!values || !values.length) return;
  const last = values[values.length - 1][0], first = Math.max(0, last - 300);
  g.strokeStyle = "#6cf"; g.beginPath();
  values.forEach(([step, v], i) => {
    const x = (step - first) / Math.max(1, last - first) * (c.width - 4) + 2, y = (1 - (v + 1) / 2) * (c.height - 4) + 2;
    i ? g.lineTo(x, y) : g.moveTo(x, y);
  });
  g.stroke();
}
function show(s) {
  last = s;
  const helps = s.help_steps || [];
  const help = helps.length ? helps[helps.length - 1] : null;
  if (help !== null && help !== lastHelp && s.state === "running") beep();
  lastHelp = help;
  plot(s.values);
  const ep = s.episode;
  const el = document.getElementById("state");
  const helpNow = help !== null && s.episode.steps - help < 30 && s.state === "running";
  el.className = s.asking_about ? "asking" : helpNow ? "help" : "";
  el.textContent = `${s.state}${s.paused ? " (paused)" : ""} | episode ${ep.episode_id || "-"} (${ep.purpose || "-"}) ` +
    `| policy ${ep.policy_version || "-"} | step ${ep.steps} | interventions ${ep.interventions}` +
    (s.asking_about ? ` | success? (s/f) for ${s.asking_about}` : "") +
    (s.state === "waiting for reset" && s.next_purpose === "demo"
      ? " | next: a demonstration: press r, drive the leader arm, then end (e)" : "") +
    (helpNow ? " | the value is falling: take over? (t)" : "");
  document.getElementById("takeover").disabled = !s.can_take_over;
  const cams = document.getElementById("cams");
  for (const cam of s.cameras) {
    let img = document.getElementById("cam-" + cam);
    if (!img) { img = document.createElement("img"); img.id = "cam-" + cam; img.alt = cam; cams.appendChild(img); }
    img.src = `/api/frame/${cam}?token=${encodeURIComponent(token)}&t=${Date.now()}`;
  }
}
async function refreshUnlabelled() {
  const r = await fetch("/api/unlabelled", {headers});
  if (!r.ok) return;
  const table = document.getElementById("unlabelled");
  table.innerHTML = "";
  for (const e of await r.json()) {
    const row = table.insertRow();
    row.insertCell().textContent = `${e.episode_id} (round ${e.round}, ${e.purpose}, ${e.steps} steps)`;
    for (const outcome of ["success", "failure"]) {
      const b = document.createElement("button"); b.textContent = outcome;
      b.onclick = () => label(outcome, e.episode_id); row.insertCell().appendChild(b);
    }
  }
}
async function poll() {
  const r = await fetch("/api/state", {headers});
  if (r.ok) show(await r.json());
}
function connect() {
  const ws = new WebSocket(`ws://${location.host}/ws?token=${encodeURIComponent(token)}`);
  ws.onmessage = m => show({...JSON.parse(m.data), can_take_over: last ? last.can_take_over : false});
  ws.onclose = () => setTimeout(connect, 1000);
}
poll(); connect(); refreshUnlabelled(); setInterval(refreshUnlabelled, 5000);
</script></body></html>
"""
