"""The bridge client: the actor's ``Robot`` for an arm served by ``BridgeServer`` on another machine.

Requests go out on a DEALER socket and replies are matched by sequence number, so a late reply to an abandoned
attempt is recognised and dropped. When a reply does not come within ``request_timeout_s`` the socket is thrown
away (a fresh one cannot deliver stale queued messages), and the same request, with the same sequence number, is
sent again after a doubling backoff; the server answers a repeated sequence number from memory instead of acting
twice. After ``reconnect_timeout_s`` without an answer the call raises ``RobotError``: the actor never hangs.

A server that restarted does not know the session any more; the client then says hello again (checking that the
arm's spec did not change) and carries on. A CURVE handshake the server refuses (unknown client key, plaintext
against an encrypted server) fails the call at once with a message saying so.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from robot_io.bridge import wire
from robot_io.bridge.keys import (
    CurveKeys,
    apply_client_curve,
    check_transport_security,
    load_public_key,
    load_secret_keys,
)
from robot_io.bridge.wire import ErrorCode, WireError
from robot_io.config import BridgeClientConfig
from robot_io.spec import ActionError, Observation, RobotError, RobotSpec, as_action

log = logging.getLogger(__name__)

_FIRST_BACKOFF_S = 0.05
# How long a goodbye may take: disconnecting must be quick even when the server is gone.
_BYE_TIMEOUT_S = 0.5
_FATAL_HANDSHAKE_EVENTS = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "the server refused this client's CURVE key (is its public key in the "
    "server's authorized_keys_dir?)",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "the security handshake failed (plaintext client against a CURVE "
    "server, or the reverse?)",
}


class _SessionUnknown(Exception):
    """The server does not know this session (it restarted); internal to the retry logic."""


@dataclass(frozen=True)
class ServerInfo:
    boot_id: str
    has_teleoperator: bool
    jpeg: bool


class BridgeClient:
    """A ``Robot`` whose arm is served by a ``BridgeServer``; safe to share between threads."""

    def __init__(self, config: BridgeClientConfig | None = None) -> None:
        self.config = config or BridgeClientConfig()
        cfg = self.config
        self._use_curve = bool(cfg.server_public_key or cfg.client_secret_key)
        if self._use_curve and not (cfg.server_public_key and cfg.client_secret_key):
            raise ValueError("CURVE needs both server_public_key and client_secret_key")
        check_transport_security(cfg.address, self._use_curve, cfg.allow_plaintext, "client")
        if cfg.request_timeout_s <= 0 or cfg.reconnect_timeout_s < cfg.request_timeout_s:
            raise ValueError("need 0 < request_timeout_s <= reconnect_timeout_s")
        self._keys: CurveKeys | None = None
        self._server_public: bytes = b""
        self._context: zmq.Context | None = None
        self._socket: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self._poller: zmq.Poller | None = None
        # One request in flight at a time: the safety watchdog and a teleop proxy may call from other threads.
        self._lock = threading.RLock()
        self._session = os.urandom(wire.SESSION_ID_BYTES)
        self._seq = 0
        self._spec: RobotSpec | None = None
        self._last_hold: np.ndarray | None = None
        self.server_info: ServerInfo | None = None

    # -- Robot protocol -----------------------------------------------------------------------------------------
    @property
    def spec(self) -> RobotSpec:
        if self._spec is None:
            raise RobotError(
                f"bridge client for {self.config.address} is not connected: call connect() first"
            )
        return self._spec

    @property
    def is_connected(self) -> bool:
        return self._spec is not None

    def connect(self) -> None:
        with self._lock:
            if self._spec is not None:
                return
            if self._use_curve:
                self._keys = load_secret_keys(self.config.client_secret_key)
                self._server_public = load_public_key(self.config.server_public_key)
            self._context = zmq.Context()
            try:
                self._open_socket()
                self._hello(time.monotonic() + self.config.reconnect_timeout_s)
            except BaseException:
                self._close_socket()
                self._context.term()
                self._context = None
                raise
            log.info("bridge client connected to %s (server %s)", self.config.address, self.server_info)

    def disconnect(self) -> None:
        with self._lock:
            if self._context is None:
                return
            if self._spec is not None:
                try:
                    self._request(wire.BYE, {}, budget_s=_BYE_TIMEOUT_S)
                except RobotError as exc:
                    log.warning("bridge server did not acknowledge goodbye: %s", exc)
            self._spec = None
            self._last_hold = None
            self._close_socket()
            self._context.term()
            self._context = None

    def start_episode(self, seed: int | None = None) -> Observation:
        return self._observation(
            self._request(wire.START_EPISODE, {"seed": None if seed is None else int(seed)})
        )

    def get_observation(self) -> Observation:
        return self._observation(self._request(wire.GET_OBSERVATION, {}))

    def send_action(self, action: np.ndarray) -> np.ndarray:
        requested = as_action(action, self.spec)
        return wire.decode_action(self._request(wire.SEND_ACTION, {"action": requested}).get("applied"))

    def hold_action(self) -> np.ndarray:
        """The hold action the server sent with the last reading; asked for only before the first one."""
        with self._lock:
            if self._last_hold is not None:
                return self._last_hold.copy()
        return wire.decode_action(self._request(wire.HOLD_ACTION, {}).get("action"))

    def _observation(self, body: dict[str, Any]) -> Observation:
        observation = wire.decode_observation(body.get("observation"))
        hold = body.get("hold")
        with self._lock:
            # A server that sends no hold with its readings is asked for one whenever it is needed.
            self._last_hold = None if hold is None else wire.decode_action(hold)
        return observation

    # -- beyond the protocol -------------------------------------------------------------------------------------
    def end_episode(self) -> None:
        """Tell the server the episode is over, so that its stale-command hold stops watching."""
        self._request(wire.END_EPISODE, {})

    def teleoperator(self) -> BridgeTeleoperator | None:
        """The server-side teleoperator (human takeover at the arm) as a local one, or None if it has none."""
        if self.server_info is None:
            raise RobotError("bridge client is not connected: call connect() first")
        return BridgeTeleoperator(self) if self.server_info.has_teleoperator else None

    def teleop_action(self) -> np.ndarray | None:
        action = self._request(wire.TELEOP_GET_ACTION, {}).get("action")
        return None if action is None else wire.decode_action(action)

    def __enter__(self) -> BridgeClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    # -- requests ---------------------------------------------------------------------------------------------
    def _hello(self, deadline: float) -> None:
        """Open (or reopen) the session; the server's spec must match what this client already promised."""
        body = self._exchange(wire.HELLO, {}, deadline)
        try:
            spec = RobotSpec.from_dict(body["spec"])
            info = ServerInfo(str(body["boot_id"]), bool(body["has_teleoperator"]), bool(body["jpeg"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise RobotError(f"bridge server sent a malformed hello reply: {exc}") from exc
        if self._spec is not None and spec.to_dict() != self._spec.to_dict():
            raise RobotError("the bridge server came back serving a different arm (its spec changed)")
        if self.server_info is not None and info.boot_id != self.server_info.boot_id:
            log.warning(
                "bridge server restarted (boot %s -> %s); session reopened",
                self.server_info.boot_id,
                info.boot_id,
            )
        self._spec, self.server_info = spec, info

    def _request(self, msg_type: str, body: dict[str, Any], budget_s: float | None = None) -> dict[str, Any]:
        with self._lock:
            if self._spec is None or self._context is None:
                raise RobotError(
                    f"bridge client for {self.config.address} is not connected: call connect() first"
                )
            deadline = time.monotonic() + (self.config.reconnect_timeout_s if budget_s is None else budget_s)
            try:
                return self._exchange(msg_type, body, deadline)
            except _SessionUnknown as exc:
                if msg_type == wire.BYE:
                    return {}
                log.warning("%s; reopening the session", exc)
            # The server restarted and forgot this session: reopen it and try once more within the same budget.
            self._hello(deadline)
            try:
                return self._exchange(msg_type, body, deadline)
            except _SessionUnknown as exc:
                raise RobotError(
                    f"bridge server at {self.config.address} keeps forgetting the session: {exc}"
                ) from exc

    def _exchange(self, msg_type: str, body: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Send one request until its reply arrives or ``deadline`` passes; map error replies to exceptions."""
        self._seq += 1
        seq, started, backoff = self._seq, time.monotonic(), _FIRST_BACKOFF_S
        while True:
            if msg_type == wire.SEND_ACTION:
                # Lets the server refuse an action that spent too long in retries to still be meaningful.
                body["age_s"] = time.monotonic() - started
            self._send(wire.pack_request(msg_type, self._session, seq, body))
            wait = min(self.config.request_timeout_s, deadline - time.monotonic())
            reply = self._await_reply(seq, time.monotonic() + max(wait, 0.0))
            if reply is not None:
                return self._unwrap(msg_type, reply)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RobotError(
                    f"bridge server at {self.config.address} did not answer '{msg_type}' within "
                    f"{deadline - started:.1f}s (server down, link lost, or this client's key not authorised)"
                )
            log.warning(
                "no reply to '%s' from %s; reconnecting in %.2fs", msg_type, self.config.address, backoff
            )
            self._close_socket()
            time.sleep(min(backoff, remaining))
            backoff = min(backoff * 2, self.config.max_backoff_s)
            self._open_socket()

    def _unwrap(self, msg_type: str, reply: wire.Reply) -> dict[str, Any]:
        if reply.ok:
            return reply.body
        code, message = reply.error_code, f"bridge server refused '{msg_type}': {reply.error_message}"
        if code == ErrorCode.ACTION_ERROR:
            raise ActionError(message)
        if code == ErrorCode.UNKNOWN_SESSION:
            raise _SessionUnknown(message)
        raise RobotError(f"{message} [{code}]")

    def _send(self, frame: bytes) -> None:
        assert self._socket is not None
        try:
            self._socket.send(frame, flags=zmq.NOBLOCK)
        except zmq.Again:
            # Nothing to queue on yet (no pipe): waiting for the reply times out and the retry loop takes over.
            log.debug("bridge request could not be queued; will retry")

    def _await_reply(self, seq: int, until: float) -> wire.Reply | None:
        assert self._socket is not None and self._monitor is not None and self._poller is not None
        while (left := until - time.monotonic()) > 0:
            ready = dict(self._poller.poll(timeout=left * 1000))
            if self._monitor in ready:
                event = recv_monitor_message(self._monitor)["event"]
                if event in _FATAL_HANDSHAKE_EVENTS:
                    raise RobotError(
                        f"bridge server at {self.config.address}: {_FATAL_HANDSHAKE_EVENTS[event]}"
                    )
            if self._socket in ready:
                try:
                    # copy=False: the frame is decoded straight from ZeroMQ's buffer, without a bytes copy.
                    reply = wire.parse_reply(self._socket.recv(copy=False).buffer)
                except WireError as exc:
                    raise RobotError(f"bridge server sent a reply this client cannot read: {exc}") from exc
                if reply.seq == seq:
                    return reply
                log.debug("dropped a late reply to request %d (waiting for %d)", reply.seq, seq)
        return None

    # -- sockets ----------------------------------------------------------------------------------------------
    def _open_socket(self) -> None:
        assert self._context is not None
        socket = self._context.socket(zmq.DEALER)
        socket.linger = 0
        socket.setsockopt(zmq.RECONNECT_IVL, 50)
        socket.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        if self._keys is not None:
            apply_client_curve(socket, self._keys, self._server_public)
        self._monitor = socket.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        )
        socket.connect(self.config.address)
        self._socket = socket
        self._poller = zmq.Poller()
        self._poller.register(socket, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.disable_monitor()
            self._socket.close(linger=0)
            self._socket = None
        if self._monitor is not None:
            self._monitor.close(linger=0)
            self._monitor = None
        self._poller = None


class BridgeTeleoperator:
    """The server's teleoperator seen from the actor; ``get_action`` asks the operator at the arm.

    The operator acts on the arm side's latest reading (the observation this client was last sent), so the
    ``observation`` argument is not shipped back across the link. Connecting and disconnecting the device itself
    is the server's business; here they only check that the bridge is up.
    """

    def __init__(self, client: BridgeClient) -> None:
        self.client = client

    def connect(self) -> None:
        if not self.client.is_connected:
            self.client.connect()

    def disconnect(self) -> None:
        """The device stays with the server (it may be a human's leader arm); nothing to release here."""

    def get_action(self, observation: Observation | None = None) -> np.ndarray | None:
        return self.client.teleop_action()
