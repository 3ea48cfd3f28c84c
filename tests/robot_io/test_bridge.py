"""The robot bridge over loopback: round trips, JPEG, authentication, reconnects, bounded failures, safety holds."""

from __future__ import annotations

import importlib.util
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq
from fakes import FakeArm, FakeOperator

from robot_io import Robot, RobotConfig, RobotError, SafetyConfig, Teleoperator
from robot_io.bridge import BridgeClient, BridgeServer, generate_keys, wire
from robot_io.bridge.keys import CurveKeys, apply_client_curve, is_loopback, load_public_key, load_secret_keys
from robot_io.config import BridgeClientConfig, BridgeServerConfig

pytestmark = pytest.mark.timeout(60)

ANY_LOOPBACK_PORT = "tcp://127.0.0.1:*"


class Keys:
    """A server pair, an authorised client pair and an intruder pair that the server has never heard of."""

    def __init__(self, root: Path) -> None:
        self.server = generate_keys(root / "server", "server")
        self.client = generate_keys(root / "client", "client")
        self.intruder = generate_keys(root / "intruder", "intruder")
        self.authorized_dir = root / "authorized"
        self.authorized_dir.mkdir()
        shutil.copy(self.client.public, self.authorized_dir)


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path)


@pytest.fixture
def servers() -> Iterator[list[BridgeServer]]:
    started: list[BridgeServer] = []
    yield started
    for server in started:
        server.stop()


def server_config(keys: Keys | None, address: str = ANY_LOOPBACK_PORT, **overrides) -> BridgeServerConfig:
    safety = overrides.pop("safety", SafetyConfig(watchdog_timeout_s=0.0))
    curve = {}
    if keys is not None:
        curve = {
            "server_secret_key": str(keys.server.secret),
            "authorized_keys_dir": str(keys.authorized_dir),
        }
    return BridgeServerConfig(
        address=address,
        allow_plaintext=keys is None,
        robot=RobotConfig(type="sim_box", safety=safety),
        **curve,
        **overrides,
    )


def client_config(endpoint: str, keys: Keys | None, **overrides) -> BridgeClientConfig:
    overrides.setdefault("request_timeout_s", 0.5)
    overrides.setdefault("reconnect_timeout_s", 2.0)
    if keys is not None:
        overrides.setdefault("server_public_key", str(keys.server.public))
        overrides.setdefault("client_secret_key", str(keys.client.secret))
    return BridgeClientConfig(address=endpoint, allow_plaintext=keys is None, **overrides)


@pytest.fixture
def serve(servers: list[BridgeServer]) -> Callable[..., BridgeServer]:
    def start(arm: FakeArm, keys: Keys | None, teleoperator=None, **overrides) -> BridgeServer:
        server = BridgeServer(server_config(keys, **overrides), arm, teleoperator).start()
        servers.append(server)
        return server

    return start


class RawPeer:
    """A bare DEALER speaking the wire format by hand, to send what a well-behaved client never would."""

    def __init__(self, endpoint: str, curve: tuple[CurveKeys, bytes] | None = None) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.linger = 0
        if curve is not None:
            apply_client_curve(self.socket, *curve)
        self.socket.connect(endpoint)
        self.session = b"s" * wire.SESSION_ID_BYTES

    def ask(self, frame: bytes | list[bytes], timeout_s: float = 2.0) -> wire.Reply | None:
        try:
            self.socket.send_multipart(frame if isinstance(frame, list) else [frame], flags=zmq.NOBLOCK)
        except zmq.Again:
            # A DEALER with no accepted connection has nowhere to put the message (e.g. its handshake failed).
            return None
        if not self.socket.poll(timeout_s * 1000):
            return None
        return wire.parse_reply(self.socket.recv())

    def request(self, msg_type: str, seq: int, body: dict | None = None, timeout_s: float = 2.0):
        return self.ask(wire.pack_request(msg_type, self.session, seq, body), timeout_s)

    def close(self) -> None:
        self.socket.close()
        self.context.term()


def assert_same_observation(got, want) -> None:
    assert sorted(got.images) == sorted(want.images)
    for name, image in want.images.items():
        assert got.images[name].dtype == np.uint8
        np.testing.assert_array_equal(got.images[name], image)
    np.testing.assert_array_equal(got.state, want.state)
    assert got.state.dtype == np.float32
    assert got.timestamp == want.timestamp
    assert got.info == want.info


# -- round trips -------------------------------------------------------------------------------------------------
def test_round_trip_over_curve(keys: Keys, serve) -> None:
    arm = FakeArm()
    server = serve(arm, keys)
    with BridgeClient(client_config(server.endpoint, keys)) as client:
        assert isinstance(client, Robot)
        assert client.spec.to_dict() == arm.spec.to_dict()
        obs = client.start_episode(seed=7)
        assert arm.episodes == [7]
        assert_same_observation(obs, arm.observations[-1])
        assert_same_observation(client.get_observation(), arm.observations[-1])

        # The server's own safety layer clips: the returned action is what the arm got, not what was asked.
        applied = client.send_action(np.array([3.0, -0.25, 0.5], dtype=np.float32))
        np.testing.assert_array_equal(applied, [1.0, -0.25, 0.5])
        np.testing.assert_array_equal(arm.actions[-1], applied)
        # Holding means the pose of the last reading: the next one shows the arm where it was sent.
        client.get_observation()
        np.testing.assert_array_equal(client.hold_action(), applied)
        assert len(arm.actions) == 1
        assert client.teleoperator() is None
    assert not client.is_connected


def test_jpeg_images_are_close_and_smaller(serve) -> None:
    arm = FakeArm(height=96, width=128)
    server = serve(arm, None, jpeg=True, jpeg_quality=90)
    with BridgeClient(client_config(server.endpoint, None)) as client:
        obs = client.start_episode(seed=1)
        assert client.server_info is not None and client.server_info.jpeg
        # Compare with the very reading this observation was encoded from (matched by its step), not with
        # whichever reading the arm made last.
        sent = next(o for o in arm.observations if o.info["step"] == obs.info["step"])
        for name, original in sent.images.items():
            got = obs.images[name]
            assert got.shape == original.shape and got.dtype == np.uint8
            error = np.abs(got.astype(np.int16) - original.astype(np.int16))
            assert error.mean() < 2.0 and error.max() < 40, (name, error.mean(), error.max())
    encoded = wire.pack(wire.encode_observation(sent, 90))
    raw = wire.pack(wire.encode_observation(sent, None))
    assert len(encoded) < len(raw) / 4


def test_teleoperator_is_proxied(serve) -> None:
    arm, operator = FakeArm(), FakeOperator(np.array([0.1, 0.2, 0.3]))
    server = serve(arm, None, teleoperator=operator)
    with BridgeClient(client_config(server.endpoint, None)) as client:
        teleop = client.teleoperator()
        assert isinstance(teleop, Teleoperator) and operator.connected
        obs = client.start_episode(seed=0)
        teleop.connect()
        assert teleop.get_action(obs) is None
        operator.engaged = True
        np.testing.assert_allclose(teleop.get_action(obs), [0.1, 0.2, 0.3])
        # The operator at the arm saw the same reading that the client was sent.
        assert operator.seen[-1].timestamp == obs.timestamp
        assert arm.actions == []


# -- security ----------------------------------------------------------------------------------------------------
def test_unauthorised_clients_are_refused_and_never_move_the_arm(keys: Keys, serve) -> None:
    arm = FakeArm()
    server = serve(arm, keys)
    intruder = client_config(server.endpoint, keys, client_secret_key=str(keys.intruder.secret))
    with pytest.raises(RobotError, match="refused this client's CURVE key"):
        BridgeClient(intruder).connect()
    plaintext = client_config(server.endpoint, None)
    with pytest.raises(RobotError):
        BridgeClient(plaintext).connect()
    wrong_server_key = client_config(
        server.endpoint, keys, server_public_key=str(keys.intruder.public), reconnect_timeout_s=1.0
    )
    with pytest.raises(RobotError):
        BridgeClient(wrong_server_key).connect()

    # Speaking the protocol directly with an unknown key gets nothing through to the arm either.
    peer = RawPeer(
        server.endpoint, (load_secret_keys(keys.intruder.secret), load_public_key(keys.server.public))
    )
    try:
        assert peer.request(wire.HELLO, 1, timeout_s=0.3) is None
        assert peer.request(wire.START_EPISODE, 2, timeout_s=0.3) is None
        assert peer.request(wire.SEND_ACTION, 3, {"action": np.ones(3, np.float32)}, timeout_s=0.5) is None
    finally:
        peer.close()
    assert arm.actions == [] and arm.episodes == []

    # The authorised key still works, so the refusals above were the authenticator's doing.
    with BridgeClient(client_config(server.endpoint, keys)) as client:
        client.start_episode(seed=0)
        client.send_action(np.zeros(3, np.float32))
    assert len(arm.actions) >= 1


def test_plaintext_is_refused_off_loopback(keys: Keys) -> None:
    for address in ("tcp://192.168.1.20:5555", "tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://robot-pc:5555"):
        assert not is_loopback(address)
        with pytest.raises(ValueError, match="non-loopback"):
            BridgeClient(BridgeClientConfig(address=address, allow_plaintext=True))
        with pytest.raises(ValueError, match="non-loopback"):
            BridgeServer(BridgeServerConfig(address=address, allow_plaintext=True), FakeArm())
    for address in ("tcp://127.0.0.1:5555", "tcp://[::1]:5555", "tcp://localhost:5555"):
        assert is_loopback(address)
        # Even on loopback, plaintext must be asked for explicitly.
        with pytest.raises(ValueError, match="no CURVE keys"):
            BridgeClient(BridgeClientConfig(address=address))
        with pytest.raises(ValueError, match="no CURVE keys"):
            BridgeServer(BridgeServerConfig(address=address), FakeArm())
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        BridgeClient(BridgeClientConfig(address="ipc:///tmp/arm", allow_plaintext=True))
    # With keys, a remote address is fine to configure (nothing is opened until connect/start).
    BridgeClient(client_config("tcp://192.168.1.20:5555", keys))


def test_generated_keys_are_private_and_not_overwritten(tmp_path: Path) -> None:
    files = generate_keys(tmp_path / "k", "arm")
    assert stat.S_IMODE(files.secret.stat().st_mode) == 0o600
    assert load_secret_keys(files.secret).public == load_public_key(files.public)
    with pytest.raises(FileExistsError):
        generate_keys(tmp_path / "k", "arm")
    with pytest.raises(ValueError, match="no secret key"):
        load_secret_keys(files.public)


# -- protocol ----------------------------------------------------------------------------------------------------
def test_malformed_and_unknown_messages_get_error_replies(serve) -> None:
    arm = FakeArm()
    server = serve(arm, None)
    peer = RawPeer(server.endpoint)
    session = peer.session
    nd_bad_length = {"__nd__": "<f4", "shape": [3], "data": b"\x00" * 5}
    nd_object = {"__nd__": "|O", "shape": [1], "data": b"\x00" * 8}
    envelope = {"v": wire.PROTOCOL_VERSION, "type": wire.SEND_ACTION, "session": session, "seq": 5}
    cases = {
        "not msgpack": (b"\xc1\xff garbage", "malformed"),
        "not a map": (msgpack.packb([1, 2, 3]), "malformed"),
        "no version": (msgpack.packb({"type": "hello", "seq": 1}), "version"),
        "future version": (msgpack.packb({**envelope, "v": 99, "body": {}}), "version"),
        "unknown type": (msgpack.packb({**envelope, "type": "self_destruct", "body": {}}), "unknown_type"),
        "short session": (msgpack.packb({**envelope, "session": b"x", "body": {}}), "malformed"),
        "negative seq": (msgpack.packb({**envelope, "seq": -3, "body": {}}), "malformed"),
        "bad array": (msgpack.packb({**envelope, "body": {"action": nd_bad_length}}), "malformed"),
        "object array": (msgpack.packb({**envelope, "body": {"action": nd_object}}), "malformed"),
        "two frames": ([wire.pack_request(wire.HELLO, session, 1), b"extra"], "malformed"),
        "no hello yet": (wire.pack_request(wire.GET_OBSERVATION, session, 1), "unknown_session"),
    }
    try:
        for name, (frame, code) in cases.items():
            reply = peer.ask(frame)
            assert reply is not None and not reply.ok, name
            assert reply.error_code == code, (name, reply.body)
        assert peer.request(wire.HELLO, 10).ok
        assert (
            peer.request(wire.SEND_ACTION, 11, {"action": np.ones(3, np.float32)}).error_code == "no_episode"
        )
        assert peer.request(wire.START_EPISODE, 12, {"seed": "zero"}).error_code == "malformed"
        reply = peer.request(wire.SEND_ACTION, 13, {"action": np.ones(4, np.float32)})
        assert reply.error_code in ("no_episode", "action_error")
    finally:
        peer.close()
    assert arm.actions == []
    with BridgeClient(client_config(server.endpoint, None)) as client:
        client.start_episode(seed=0)
        assert len(arm.observations) == 1


def test_a_retried_action_is_applied_once(serve) -> None:
    arm = FakeArm()
    server = serve(arm, None)
    peer = RawPeer(server.endpoint)
    try:
        assert peer.request(wire.HELLO, 1).ok
        assert peer.request(wire.START_EPISODE, 2, {"seed": 3}).ok
        action = {"action": np.array([0.1, 0.2, 0.3], np.float32), "age_s": 0.0}
        first, retry = peer.request(wire.SEND_ACTION, 3, action), peer.request(wire.SEND_ACTION, 3, action)
        assert first.ok and retry.ok
        np.testing.assert_array_equal(first.body["applied"], retry.body["applied"])
        assert len(arm.actions) == 1 and server.stats.duplicates == 1
        assert peer.request(wire.SEND_ACTION, 2, action).error_code == "stale_seq"
        # A late copy of the session's hello must not rewind the sequence and let seq 3 through again.
        assert peer.request(wire.HELLO, 1).ok
        assert peer.request(wire.SEND_ACTION, 3, action).ok
        assert len(arm.actions) == 1
    finally:
        peer.close()


def test_newest_client_takes_control(serve) -> None:
    arm = FakeArm()
    server = serve(arm, None)
    with BridgeClient(client_config(server.endpoint, None)) as first:
        first.start_episode(seed=0)
        with BridgeClient(client_config(server.endpoint, None)) as second:
            with pytest.raises(RobotError, match="another client has taken control"):
                first.send_action(np.zeros(3, np.float32))
            second.start_episode(seed=1)
            second.send_action(np.full(3, 0.5, np.float32))
    assert len(arm.actions) >= 1 and arm.episodes == [0, 1]


# -- links that fail ---------------------------------------------------------------------------------------------
def test_client_reconnects_after_server_restart(keys: Keys, serve) -> None:
    first_arm = FakeArm()
    server = serve(first_arm, keys)
    endpoint = server.endpoint
    client = BridgeClient(client_config(endpoint, keys, reconnect_timeout_s=5.0))
    client.connect()
    first_boot = client.server_info.boot_id
    client.start_episode(seed=0)
    client.send_action(np.full(3, 0.1, np.float32))
    server.stop()

    # The new server comes up on the same port while the client is already retrying.
    second_arm = FakeArm()
    restart = threading.Timer(0.8, lambda: serve(second_arm, keys, address=endpoint))
    restart.start()
    try:
        started = time.monotonic()
        obs = client.start_episode(seed=1)
        assert time.monotonic() - started >= 0.5
        assert client.server_info.boot_id != first_boot
        assert_same_observation(obs, second_arm.observations[-1])
        client.send_action(np.full(3, 0.2, np.float32))
        assert len(second_arm.actions) == 1
        # The first arm got its one action, then was held in place when its server stopped mid-episode.
        assert len(first_arm.actions) == 2 and np.array_equal(first_arm.actions[1], first_arm.actions[0])
    finally:
        restart.join()
        client.disconnect()


def test_robot_error_within_reconnect_timeout_when_server_is_gone(serve) -> None:
    server = serve(FakeArm(), None)
    client = BridgeClient(
        client_config(server.endpoint, None, request_timeout_s=0.2, reconnect_timeout_s=1.0)
    )
    client.connect()
    client.start_episode(seed=0)
    server.stop()
    started = time.monotonic()
    with pytest.raises(RobotError, match="did not answer"):
        client.send_action(np.zeros(3, np.float32))
    assert 0.9 <= time.monotonic() - started < 2.0
    started = time.monotonic()
    client.disconnect()
    assert time.monotonic() - started < 1.5

    nobody = BridgeClient(
        client_config(server.endpoint, None, request_timeout_s=0.2, reconnect_timeout_s=0.6)
    )
    started = time.monotonic()
    with pytest.raises(RobotError):
        nobody.connect()
    assert time.monotonic() - started < 1.5 and not nobody.is_connected


# -- holding the arm ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("holder", ["bridge_server", "safety_watchdog"])
def test_stale_commands_make_the_server_hold(serve, holder: str) -> None:
    arm = FakeArm()
    if holder == "bridge_server":
        server = serve(arm, None, stale_command_timeout_s=0.3)
    else:
        server = serve(arm, None, stale_command_timeout_s=0.0, safety=SafetyConfig(watchdog_timeout_s=0.3))
    with BridgeClient(client_config(server.endpoint, None)) as client:
        client.start_episode(seed=0)
        client.send_action(np.full(3, 0.5, np.float32))
        deadline = time.monotonic() + 3.0
        while len(arm.actions) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        # The hold is the arm's own position commanded as its target: it stays where it is.
        assert len(arm.actions) == 2
        np.testing.assert_array_equal(arm.actions[1], arm.actions[0])
        time.sleep(0.5)
        assert len(arm.actions) == 2, "holds once per stale period, not in a loop"


def test_an_action_that_arrives_too_late_is_refused(serve) -> None:
    arm = FakeArm()
    server = serve(arm, None, stale_command_timeout_s=0.5)
    peer = RawPeer(server.endpoint)
    try:
        assert peer.request(wire.HELLO, 1).ok and peer.request(wire.START_EPISODE, 2).ok
        late = {"action": np.array([0.9, 0.9, 0.9], np.float32), "age_s": 3.0}
        assert peer.request(wire.SEND_ACTION, 3, late).error_code == "stale_command"
        # The arm was held where it was (zeros) instead of being sent to 0.9.
        assert len(arm.actions) == 1 and not np.any(arm.actions[0])
        assert server.stats.stale_actions_refused == 1
    finally:
        peer.close()


def test_client_goodbye_holds_and_ends_the_episode(serve) -> None:
    arm = FakeArm()
    server = serve(arm, None, stale_command_timeout_s=0.2)
    with BridgeClient(client_config(server.endpoint, None)) as client:
        client.start_episode(seed=0)
        client.send_action(np.full(3, 0.4, np.float32))
    assert len(arm.actions) == 2 and np.array_equal(arm.actions[1], arm.actions[0])
    time.sleep(0.4)
    assert len(arm.actions) == 2, "no stale holds once the episode is over"


# -- the simulator ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(
    importlib.util.find_spec("robot_io.sim") is None, reason="robot_io.sim is not in this checkout"
)
def test_bridge_over_the_simulator(keys: Keys, serve) -> None:
    from robot_io import validate_observation
    from robot_io.bridge import make_server_teleoperator
    from robot_io.sim import BoxAssemblySim

    config = server_config(keys)
    sim = BoxAssemblySim(config.robot.sim_box)
    server = serve(sim, keys, teleoperator=make_server_teleoperator(config.robot, sim))
    with BridgeClient(
        client_config(server.endpoint, keys, request_timeout_s=5.0, reconnect_timeout_s=20.0)
    ) as client:
        assert client.spec.to_dict() == sim.spec.to_dict()
        obs = client.start_episode(seed=0)
        validate_observation(obs, client.spec)
        hold = client.hold_action()
        applied = client.send_action(hold)
        assert applied.shape == (client.spec.action_dim,)
        validate_observation(client.get_observation(), client.spec)
        teleop = client.teleoperator()
        assert teleop is not None
        action = teleop.get_action(obs)
        assert action is None or action.shape == (client.spec.action_dim,)


# -- command line ----------------------------------------------------------------------------------------------
def test_keys_cli_writes_a_pair_and_refuses_to_overwrite(tmp_path: Path, capsys) -> None:
    from robot_io.cli import keys_main

    assert keys_main([str(tmp_path), "--name", "actor0"]) == 0
    assert (tmp_path / "actor0.key").is_file() and (tmp_path / "actor0.key_secret").is_file()
    with pytest.raises(SystemExit):
        keys_main([str(tmp_path), "--name", "actor0"])
    assert "already exist" in capsys.readouterr().err
    assert keys_main([str(tmp_path), "--name", "actor0", "--force"]) == 0


@pytest.mark.skipif(
    importlib.util.find_spec("robot_io.sim") is None, reason="robot_io.sim is not in this checkout"
)
def test_bridge_cli_serves_the_simulator_until_interrupted(keys: Keys, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"tcp://127.0.0.1:{port}"
    overrides = [
        f"address={endpoint}",
        f"server_secret_key={keys.server.secret}",
        f"authorized_keys_dir={keys.authorized_dir}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
    ]
    code = f"import sys; from robot_io.cli import bridge_main; sys.argv[1:] = {overrides!r}; bridge_main()"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        config = client_config(endpoint, keys, request_timeout_s=2.0, reconnect_timeout_s=30.0)
        with BridgeClient(config) as client:
            assert client.spec.action_dim == 5 and client.server_info.has_teleoperator
            client.start_episode(seed=0)
            client.send_action(client.hold_action())
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output.decode(errors="replace")
    assert b"bridge server stopped" in output
