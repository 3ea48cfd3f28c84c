"""Robot bridge latency: one control step (get_observation + send_action) through the bridge, against raw ZeroMQ.

Run: ``.venv/bin/python benchmarks/bench_bridge.py [--steps N]``. Everything is on loopback. Each row times N
control steps from the actor's side, through the actor's ``SafeRobot`` around the client (the path an arm's
actor takes: any extra request the safety layer made per step would show here); the floor is a bare ZeroMQ DEALER/ROUTER exchange of exactly the bytes the
bridge puts on the wire for that step (observation request and reply, action request and reply), measured in the
same run with the same security. Servers run in child processes (as on a separate control PC), and bridge and
floor steps alternate, so that both see the same load on a shared machine. The ratio bridge/floor at p99 is the
bridge's own overhead (goal: <= 2x); the p50 ratio shows its fixed per-step cost (Python encode/decode, safety).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zmq
from zmq.auth.thread import ThreadAuthenticator

from robot_io.bridge import BridgeClient, BridgeServer, generate_keys, wire
from robot_io.bridge.keys import apply_client_curve, apply_server_curve, load_public_key, load_secret_keys
from robot_io.config import BridgeClientConfig, BridgeServerConfig, RobotConfig
from robot_io.safety import SafeRobot, SafetyConfig
from robot_io.spec import CameraSpec, Observation, RobotSpec

ACTION_DIM = 6


class StaticArm:
    """A Robot whose cameras return fixed frames, so that only the bridge is timed, not image generation."""

    def __init__(self, cameras: int, size: int) -> None:
        names = [f"cam{i}" for i in range(cameras)]
        self._spec = RobotSpec(
            cameras=tuple(CameraSpec(n, size, size) for n in names),
            state_names=tuple(f"joint{i}" for i in range(ACTION_DIM)),
            action_names=tuple(f"joint{i}" for i in range(ACTION_DIM)),
            action_low=-np.ones(ACTION_DIM),
            action_high=np.ones(ACTION_DIM),
            control_hz=30.0,
        )
        rng = np.random.default_rng(0)
        self.images = {n: rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for n in names}
        self.position = np.zeros(ACTION_DIM, dtype=np.float32)
        self.connected = False

    @property
    def spec(self) -> RobotSpec:
        return self._spec

    @property
    def is_connected(self) -> bool:
        return self.connected

    def connect(self) -> None:
        self.connected = True

    def disconnect(self) -> None:
        self.connected = False

    def start_episode(self, seed: int | None = None) -> Observation:
        return self.get_observation()

    def get_observation(self) -> Observation:
        return Observation(images=dict(self.images), state=self.position.copy(), timestamp=time.time())

    def send_action(self, action: np.ndarray) -> np.ndarray:
        self.position = np.asarray(action, dtype=np.float32)
        return self.position.copy()

    def hold_action(self) -> np.ndarray:
        return self.position.copy()


class Keys:
    def __init__(self, root: Path) -> None:
        self.server = generate_keys(root, "server")
        self.client = generate_keys(root, "client")
        self.authorized = root / "authorized"
        self.authorized.mkdir()
        shutil.copy(self.client.public, self.authorized)


def percentiles_ms(samples: list[float]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.asarray(samples) * 1000, [50, 99])
    return float(p50), float(p99)


def wire_messages(arm: StaticArm) -> list[tuple[bytes, bytes]]:
    """The (request, reply) byte strings of one bridge control step, exactly as the bridge encodes them."""
    session, action = b"s" * wire.SESSION_ID_BYTES, np.zeros(ACTION_DIM, dtype=np.float32)
    observation = wire.encode_observation(arm.get_observation(), None)
    return [
        (
            wire.pack_request(wire.GET_OBSERVATION, session, 1),
            wire.pack_reply(1, {"observation": observation, "hold": action}),
        ),
        (
            wire.pack_request(wire.SEND_ACTION, session, 2, {"action": action, "age_s": 0.0}),
            wire.pack_reply(2, {"applied": action}),
        ),
    ]


def free_loopback_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def serve_bridge(endpoint: str, cameras: int, size: int, keys: Keys | None, jpeg: bool, ready, stop) -> None:
    """Child process: the arm's side, as on a control PC (its own interpreter, so no shared GIL)."""
    # The server holds the arm when the benchmark client says goodbye; that warning is expected here.
    logging.getLogger("robot_io.bridge").setLevel(logging.ERROR)
    curve = {}
    if keys is not None:
        curve = {"server_secret_key": str(keys.server.secret), "authorized_keys_dir": str(keys.authorized)}
    config = BridgeServerConfig(
        address=endpoint,
        allow_plaintext=keys is None,
        stale_command_timeout_s=0.0,
        jpeg=jpeg,
        robot=RobotConfig(safety=SafetyConfig(watchdog_timeout_s=0.0)),
        **curve,
    )
    with BridgeServer(config, StaticArm(cameras, size)):
        ready.set()
        stop.wait()


def serve_floor(endpoint: str, cameras: int, size: int, keys: Keys | None, ready, stop) -> None:
    """Child process: a bare ROUTER answering each request with the reply bytes the bridge would send."""
    replies = dict(wire_messages(StaticArm(cameras, size)))
    context = zmq.Context()
    auth = None
    router = context.socket(zmq.ROUTER)
    if keys is not None:
        auth = ThreadAuthenticator(context)
        auth.start()
        auth.configure_curve(domain="*", location=str(keys.authorized))
        apply_server_curve(router, load_secret_keys(keys.server.secret))
    router.bind(endpoint)
    ready.set()
    while not stop.is_set():
        if router.poll(20):
            identity, request = router.recv_multipart()
            router.send_multipart([identity, replies[request]])
    router.close(linger=0)
    if auth is not None:
        auth.stop()
    context.term()


def interleaved(steps: int, bridge_step: Callable[[], None], floor_step: Callable[[], None] | None):
    """Time both kinds of step alternately, so that both see the same load on a shared machine."""
    bridge, floor = [], []
    for i in range(steps + steps // 10):
        for step, samples in ((bridge_step, bridge), (floor_step, floor)):
            if step is None:
                continue
            started = time.perf_counter()
            step()
            if i >= steps // 10:  # the first tenth warms up caches and connections
                samples.append(time.perf_counter() - started)
    return bridge, floor


def compare(
    cameras: int, size: int, keys: Keys | None, steps: int, jpeg: bool = False, with_floor: bool = True
) -> tuple[list[float], list[float]]:
    """Per-step latencies (seconds) of the bridge and of its raw ZeroMQ floor, servers in child processes."""
    bridge_endpoint, floor_endpoint = free_loopback_endpoint(), free_loopback_endpoint()
    requests = [request for request, _ in wire_messages(StaticArm(cameras, size))]
    curve = {}
    if keys is not None:
        curve = {"server_public_key": str(keys.server.public), "client_secret_key": str(keys.client.secret)}
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    if keys is not None:
        apply_client_curve(dealer, load_secret_keys(keys.client.secret), load_public_key(keys.server.public))
    client = BridgeClient(BridgeClientConfig(address=bridge_endpoint, allow_plaintext=keys is None, **curve))
    # The path an arm's actor takes: the client behind the actor's own safety layer (the watchdog's thread off,
    # so that only the step itself is timed).
    robot = SafeRobot(client, SafetyConfig(watchdog_timeout_s=0.0))
    action = np.zeros(ACTION_DIM, dtype=np.float32)

    def bridge_step() -> None:
        robot.get_observation()
        robot.send_action(action)

    def floor_step() -> None:
        for request in requests:
            dealer.send(request)
            dealer.recv()

    try:
        with (
            ServerProcess(serve_bridge, bridge_endpoint, cameras, size, keys, jpeg),
            ServerProcess(serve_floor, floor_endpoint, cameras, size, keys),
        ):
            dealer.connect(floor_endpoint)
            with robot:
                robot.start_episode(seed=0)
                return interleaved(steps, bridge_step, floor_step if with_floor else None)
    finally:
        dealer.close(linger=0)
        context.term()


class ServerProcess:
    """Run ``target(*args, ready, stop)`` in a fresh interpreter for the duration of a ``with`` block."""

    def __init__(self, target, *args) -> None:
        spawn = multiprocessing.get_context("spawn")
        self.ready, self.stop = spawn.Event(), spawn.Event()
        self.process = spawn.Process(target=target, args=(*args, self.ready, self.stop), daemon=True)

    def __enter__(self) -> ServerProcess:
        self.process.start()
        deadline = time.monotonic() + 60
        while not self.ready.wait(timeout=0.1):
            if not self.process.is_alive() or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError("benchmark server process did not start (see its traceback above)")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="timed control steps per row")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_bridge_"))
    try:
        keys = Keys(root)
        print(f"observation->action round trip on loopback, {args.steps} steps per row (ms)")
        print(
            f"{'configuration':<30} {'bytes/step':>10} {'security':>9} {'p50':>7} {'p99':>7} {'floor p50':>9} "
            f"{'floor p99':>9} {'p99 ratio':>9} {'p50 ratio':>9}"
        )
        for cameras, size in ((2, 64), (3, 224)):
            step_bytes = sum(len(q) + len(r) for q, r in wire_messages(StaticArm(cameras, size)))
            for security, key_set in (("CURVE", keys), ("plaintext", None)):
                bridge_samples, floor_samples = compare(cameras, size, key_set, args.steps)
                bridge, floor = percentiles_ms(bridge_samples), percentiles_ms(floor_samples)
                name = f"{cameras} cameras {size}x{size}"
                print(
                    f"{name:<30} {step_bytes:>10} {security:>9} {bridge[0]:7.3f} {bridge[1]:7.3f} "
                    f"{floor[0]:9.3f} {floor[1]:9.3f} {bridge[1] / floor[1]:8.2f}x {bridge[0] / floor[0]:8.2f}x"
                )
        jpeg = percentiles_ms(compare(3, 224, keys, args.steps // 4, jpeg=True, with_floor=False)[0])
        print(
            f"{'3 cameras 224x224, JPEG q90':<30} {'':>10} {'CURVE':>9} {jpeg[0]:7.3f} {jpeg[1]:7.3f}  "
            "(encode/decode cost: for slow links only)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
