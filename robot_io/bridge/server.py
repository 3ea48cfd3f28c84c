"""The bridge server: runs on the arm's control PC, owns the arm (behind its own safety layer) and serves it.

One thread owns the ROUTER socket and every call into the robot, so requests are handled strictly in order. One
client session controls the arm at a time; the newest ``hello`` takes control (an actor restarted overnight must
be able to take over from its dead predecessor) and the older session's requests are then refused.

Idempotency: the server remembers the controlling session's last sequence number and its reply. A retried
request (same seq, after a reconnect) gets the remembered reply and is not executed again, so an action is never
applied twice; an older seq is refused.

Stale commands: besides the ``SafeRobot`` watchdog (``robot.safety.watchdog_timeout_s``), the server itself holds
the arm when the controller sent no action for ``stale_command_timeout_s`` during an episode, and refuses (and
holds instead of) an action whose client-side retries took longer than that, since it was computed from an
observation that old.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq
from zmq.auth.thread import ThreadAuthenticator

from robot_io.bridge import wire
from robot_io.bridge.keys import (
    apply_server_curve,
    authorized_key_files,
    check_transport_security,
    load_secret_keys,
)
from robot_io.bridge.wire import ErrorCode, WireError
from robot_io.config import BridgeServerConfig, RobotConfig
from robot_io.robot import Robot, Teleoperator
from robot_io.safety import SafeRobot
from robot_io.spec import ActionError, Observation, RobotError

log = logging.getLogger(__name__)

# Requests are small (an action at most); anything bigger is refused by ZeroMQ before it is read into memory.
MAX_REQUEST_BYTES = 1 << 20
_POLL_MS = 20
_ZERO_COPY_BYTES = 1 << 16
_REMEMBERED_SESSIONS = 64


@dataclass
class BridgeServerStats:
    requests: int = 0
    errors: int = 0
    duplicates: int = 0
    holds: int = 0
    stale_actions_refused: int = 0


class BridgeServer:
    """Serve ``robot`` (wrapped in ``SafeRobot`` with ``config.robot.safety``) and an optional teleoperator.

    Use ``start()``/``stop()`` (a background thread, as in tests) or ``serve_forever()`` (the CLI).
    """

    def __init__(
        self, config: BridgeServerConfig, robot: Robot, teleoperator: Teleoperator | None = None
    ) -> None:
        self.config = config
        self._use_curve = bool(config.server_secret_key or config.authorized_keys_dir)
        if self._use_curve and not (config.server_secret_key and config.authorized_keys_dir):
            raise ValueError("CURVE needs both server_secret_key and authorized_keys_dir")
        check_transport_security(config.address, self._use_curve, config.allow_plaintext, "server")
        self.robot = robot if isinstance(robot, SafeRobot) else SafeRobot(robot, config.robot.safety)
        self.teleoperator = teleoperator
        self.stats = BridgeServerStats()
        # Changes on every start, so a client can tell a restarted server (whose arm state is fresh) apart.
        self.boot_id = os.urandom(8).hex()
        self._jpeg_quality = config.jpeg_quality if config.jpeg else None
        self._controller: bytes | None = None
        self._known_sessions: OrderedDict[bytes, None] = OrderedDict()
        self._last_seq = -1
        self._last_reply: bytes | None = None
        self._episode_active = False
        self._last_action_time = time.monotonic()
        self._stale_held = False
        self._last_observation: Observation | None = None
        self._context: zmq.Context | None = None
        self._socket: zmq.Socket | None = None
        self._auth: ThreadAuthenticator | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.endpoint = ""

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> BridgeServer:
        """Connect the arm, bind, and serve on a background thread; returns self once it accepts requests.

        The arm is connected on the serving thread too: some robots bind resources to the thread that opened
        them (the simulator's OpenGL context), so every call into the robot comes from that one thread.
        """
        opened = threading.Event()
        failure: list[BaseException] = []

        def open_and_serve() -> None:
            try:
                self._open()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller of start() below
                failure.append(exc)
                return
            finally:
                opened.set()
            self._run()

        self._thread = threading.Thread(target=open_and_serve, name="vivarl-bridge-server", daemon=True)
        self._thread.start()
        opened.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def serve_forever(self) -> None:
        """Serve on this thread until ``stop()`` is called (e.g. from a signal handler)."""
        self._open()
        self._run()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            self._thread = None

    def __enter__(self) -> BridgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _open(self) -> None:
        self._stop.clear()
        if self._jpeg_quality is not None:
            # Load OpenCV's codec now, not on the first observation: importing cv2 inside that request took the
            # reply past a client's timeout under load (a flaky test caught it), and a missing codec fails here.
            wire.encode_jpeg(np.zeros((8, 8, 3), dtype=np.uint8), self._jpeg_quality)
        self.robot.connect()
        try:
            if self.teleoperator is not None:
                self.teleoperator.connect()
            self._bind()
        except BaseException:
            self._close_devices()
            raise
        log.info(
            "bridge server %s serving %s at %s (%s)",
            self.boot_id,
            type(self.robot.inner).__name__,
            self.endpoint,
            "CURVE" if self._use_curve else "PLAINTEXT, loopback only",
        )

    def _bind(self) -> None:
        self._context = zmq.Context()
        try:
            socket = self._context.socket(zmq.ROUTER)
            socket.linger = 0
            socket.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
            if self._use_curve:
                keys = load_secret_keys(self.config.server_secret_key)
                allowed = authorized_key_files(self.config.authorized_keys_dir)
                # The authenticator must run before bind: without a ZAP handler CURVE accepts any client key.
                self._auth = ThreadAuthenticator(self._context)
                self._auth.start()
                self._auth.configure_curve(domain="*", location=str(self.config.authorized_keys_dir))
                log.info(
                    "bridge server accepts %d client key(s): %s", len(allowed), [p.stem for p in allowed]
                )
                apply_server_curve(socket, keys)
            self._socket = socket
            socket.bind(self.config.address)
            self.endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
        except BaseException:
            self._close_sockets()
            raise

    def _run(self) -> None:
        assert self._socket is not None
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if poller.poll(_POLL_MS):
                    frames = self._socket.recv_multipart()
                    reply = self._handle(frames[1:]) if len(frames) >= 2 else None
                    if reply is not None:
                        # Zero-copy pays off only for large frames (observations); small ones are cheaper copied.
                        self._socket.send_multipart([frames[0], reply], copy=len(reply) < _ZERO_COPY_BYTES)
                self._hold_if_stale()
        finally:
            self._close_sockets()
            self._close_devices()

    def _close_sockets(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._context is not None:
            self._context.term()
            self._context = None

    def _close_devices(self) -> None:
        if self._episode_active:
            self._hold("server stopping")
            self.robot.end_episode()
            self._episode_active = False
        if self.teleoperator is not None:
            self.teleoperator.disconnect()
        self.robot.disconnect()

    # -- request handling ---------------------------------------------------------------------------------------
    def _handle(self, frames: list[bytes]) -> bytes:
        self.stats.requests += 1
        try:
            if len(frames) != 1:
                raise WireError(ErrorCode.MALFORMED, f"a request is one frame, got {len(frames)}")
            request = wire.parse_request(frames[0])
        except WireError as exc:
            self.stats.errors += 1
            log.warning("refused malformed request: %s", exc)
            return wire.pack_error(exc.seq, exc.code, str(exc))
        if request.type == wire.HELLO:
            return self._hello(request)
        if request.session != self._controller:
            self.stats.errors += 1
            if request.session in self._known_sessions:
                return wire.pack_error(request.seq, ErrorCode.SUPERSEDED, "another client has taken control")
            return wire.pack_error(
                request.seq, ErrorCode.UNKNOWN_SESSION, "unknown session: send hello first"
            )
        if request.seq == self._last_seq and self._last_reply is not None:
            self.stats.duplicates += 1
            return self._last_reply
        if request.seq < self._last_seq:
            self.stats.errors += 1
            return wire.pack_error(request.seq, ErrorCode.STALE_SEQ, f"seq {request.seq} < {self._last_seq}")
        reply = self._execute(request)
        self._last_seq, self._last_reply = request.seq, reply
        return reply

    def _hello(self, request: wire.Request) -> bytes:
        body = {
            "spec": self.robot.spec.to_dict(),
            "boot_id": self.boot_id,
            "has_teleoperator": self.teleoperator is not None,
            "jpeg": self._jpeg_quality is not None,
        }
        # A late copy of this session's hello (retried on another socket) must not rewind its sequence state.
        if request.session == self._controller and request.seq <= self._last_seq:
            return wire.pack_reply(request.seq, body)
        if self._controller is not None and request.session != self._controller:
            log.warning(
                "client session %s takes control from %s", request.session.hex(), self._controller.hex()
            )
        self._controller = request.session
        self._known_sessions[request.session] = None
        while len(self._known_sessions) > _REMEMBERED_SESSIONS:
            self._known_sessions.popitem(last=False)
        self._last_seq, self._last_reply = request.seq, None
        return wire.pack_reply(request.seq, body)

    def _execute(self, request: wire.Request) -> bytes:
        try:
            return wire.pack_reply(request.seq, self._dispatch(request))
        except WireError as exc:
            code, message = exc.code, str(exc)
        except ActionError as exc:
            code, message = ErrorCode.ACTION_ERROR, str(exc)
        except RobotError as exc:
            code, message = ErrorCode.ROBOT_ERROR, str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug in one request must not take the arm's server down
            log.exception("bridge request %s failed", request.type)
            code, message = ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"
        self.stats.errors += 1
        return wire.pack_error(request.seq, code, message)

    def _dispatch(self, request: wire.Request) -> dict[str, Any]:
        body = request.body
        if request.type == wire.START_EPISODE:
            seed = body.get("seed")
            if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
                raise WireError(ErrorCode.MALFORMED, f"seed must be an integer or nil, got {seed!r}")
            obs = self.robot.start_episode(seed)
            self._episode_active, self._stale_held = True, False
            self._last_action_time = time.monotonic()
            return self._observation_reply(obs)
        if request.type == wire.GET_OBSERVATION:
            return self._observation_reply(self.robot.get_observation())
        if request.type == wire.SEND_ACTION:
            return {"applied": self._send_action(body)}
        if request.type == wire.HOLD_ACTION:
            return {"action": self.robot.hold_action()}
        if request.type == wire.END_EPISODE:
            self.robot.end_episode()
            self._episode_active = False
            return {}
        if request.type == wire.TELEOP_GET_ACTION:
            return {"action": self._teleop_action()}
        if request.type == wire.BYE:
            self._release()
            return {}
        raise WireError(ErrorCode.UNKNOWN_TYPE, f"unhandled request type {request.type!r}", request.seq)

    def _send_action(self, body: dict[str, Any]) -> np.ndarray:
        if not self._episode_active:
            raise WireError(
                ErrorCode.NO_EPISODE, "no episode is active on the server: call start_episode first"
            )
        action = wire.decode_action(body.get("action"))
        age = body.get("age_s", 0.0)
        timeout = self.config.stale_command_timeout_s
        if not isinstance(age, int | float):
            raise WireError(ErrorCode.MALFORMED, f"age_s must be a number, got {age!r}")
        if timeout > 0 and age > timeout:
            self.stats.stale_actions_refused += 1
            self._hold(f"refused an action {age:.2f}s old")
            raise WireError(
                ErrorCode.STALE_COMMAND, f"action was {age:.2f}s old (> {timeout}s): arm held instead"
            )
        applied = self.robot.send_action(action)
        self._last_action_time, self._stale_held = time.monotonic(), False
        return applied

    def _teleop_action(self) -> np.ndarray | None:
        if self.teleoperator is None:
            raise WireError(ErrorCode.NO_TELEOP, "this bridge server has no teleoperator")
        # The operator acts on what the arm's side saw last: the same reading the client was sent.
        observation = self._last_observation or self.robot.get_observation()
        action = self.teleoperator.get_action(observation)
        return None if action is None else np.asarray(action, dtype=np.float32)

    def _release(self) -> None:
        """The controller said goodbye: hold the arm, stop the episode, and let anyone take control."""
        if self._episode_active:
            self._hold("client disconnected")
            self.robot.end_episode()
            self._episode_active = False
        self._controller = None

    def _observation_reply(self, obs: Observation) -> dict[str, Any]:
        """The reading, plus the hold action of the same reading: the client holds the arm with it, so that
        holding costs neither a round trip nor another read of the arm."""
        self._last_observation = obs
        return {
            "observation": wire.encode_observation(obs, self._jpeg_quality),
            "hold": self.robot.hold_action(),
        }

    # -- holding ----------------------------------------------------------------------------------------------
    def _hold_if_stale(self) -> None:
        timeout = self.config.stale_command_timeout_s
        if not self._episode_active or timeout <= 0 or self._stale_held:
            return
        if time.monotonic() - self._last_action_time > timeout:
            self._hold(f"no action for {timeout}s")
            self._stale_held = True

    def _hold(self, why: str) -> None:
        try:
            self.robot.send_action(self.robot.hold_action())
        except Exception:  # noqa: BLE001 - holding is best effort; the safety watchdog remains behind it
            log.exception("bridge server could not hold the arm (%s)", why)
            return
        self.stats.holds += 1
        log.warning("bridge server held the arm: %s", why)


def make_server_teleoperator(config: RobotConfig, robot: Robot) -> Teleoperator | None:
    """The arm's own teleoperator for human takeover: LeRobot's ``teleop_type``, or the simulator's expert."""
    if config.type == "lerobot":
        from robot_io.lerobot_adapter import make_lerobot_teleop

        return make_lerobot_teleop(config.lerobot, robot.spec.action_names)
    if config.type == "sim_box":
        from robot_io.sim import ScriptedExpert

        # Correction mode: None while the policy drives, an action when the simulated human takes over.
        return ScriptedExpert(robot, config.sim_box.expert, demo=False)  # type: ignore[arg-type]
    return None
