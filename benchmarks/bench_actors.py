"""Robot actors: policy-weight broadcast time to 1, 2 and 4 actors, and control-loop jitter at 10 and 30 Hz.

Run: ``.venv/bin/python benchmarks/bench_actors.py [--jitter-only]``. Broadcast is measured from ``ray.put`` of
the packed checkpoint until every actor has loaded the policy, against the floor of sending the same bytes to the
same number of trivial actors. Jitter runs a policy on the simulator paced at the control rate, with inference on
the control thread (sync) and off it (async, ``policy.async_chunks`` at its defaults), and reports the p50/p99
error of the step period, as a share of the period and against a loop that only sleeps to the same schedule (the
floor). Policies: the tiny built-in one, LeRobot's ACT at its default size, and the built-in one with inference
made to take two control periods. Goal: p99 under 10% of the period.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import ray

from actors.episode import run_episode
from actors.robot_actor import ActorSettings, launch_robot_actors
from actors.weights import pack_checkpoint
from policy import Normalizer, Policy, PolicyConfig, build_model, load_policy, save_policy
from policy.async_chunks import AsyncChunkPolicy, InferenceConfig
from robot_io import RobotConfig, SimBoxConfig, make_robot


def tiny_checkpoint(root: Path) -> Path:
    config = PolicyConfig()
    zeros = {"mean": [0.0] * config.state_dim, "std": [1.0] * config.state_dim}
    actions = {"mean": [0.0] * config.action_dim, "std": [1.0] * config.action_dim}
    return save_policy(
        build_model(config), Normalizer({"state": zeros, "action": actions}), root, 1, labelling_run=None
    )


@ray.remote(num_cpus=0.1)
class Sink:
    def take(self, blob) -> int:
        return sum(len(b) for b in blob.files.values())


def broadcast(checkpoint: Path, arms: int, repeats: int) -> None:
    resources = {f"robot:b{i}": 1.0 for i in range(arms)}
    ray.init(num_cpus=arms + 2, resources=resources, include_dashboard=False, log_to_driver=False)
    try:
        store = tempfile.mkdtemp(prefix="bench-actors-")
        settings = [
            ActorSettings(
                RobotConfig(
                    type="sim_box", name=f"b{i}", sim_box=SimBoxConfig(image_height=32, image_width=32)
                ),
                store_url=store,
                task="bench",
            )
            for i in range(arms)
        ]
        actors = list(launch_robot_actors(settings).values())
        sinks = [Sink.remote() for _ in range(arms)]
        ray.get([a.info.remote() for a in actors])
        packed = pack_checkpoint(checkpoint, "v1")
        size_mb = sum(len(b) for b in packed.files.values()) / 1e6
        print(
            f"checkpoint {size_mb:.2f} MB; {'actors':>6} {'broadcast+load ms':>18} {'floor ms':>9} {'ratio':>6}"
        )
        for n in (1, 2, 4):
            if n > arms:
                continue
            deploy, floor = [], []
            for _ in range(repeats):
                start = time.perf_counter()
                ref = ray.put(packed)
                ray.get([a.set_policy.remote(ref, load_now=True) for a in actors[:n]])
                deploy.append(time.perf_counter() - start)
                start = time.perf_counter()
                ref = ray.put(packed)
                ray.get([s.take.remote(ref) for s in sinks[:n]])
                floor.append(time.perf_counter() - start)
            d, f = np.median(deploy) * 1e3, np.median(floor) * 1e3
            print(f"{'':>27}{n:>6} {d:>18.1f} {f:>9.1f} {d / f:>5.1f}x")
    finally:
        ray.shutdown()


class SlowPolicy(Policy):
    """The built-in policy with chunk inference made to take ``delay_s`` (ACT or diffusion on a slow CPU)."""

    delay_s = 0.0

    def predict_chunks(self, observations, token=None):
        time.sleep(self.delay_s)
        return super().predict_chunks(observations, token)


def act_checkpoint(root: Path) -> Path:
    """LeRobot's ACT at its default size (ResNet-18 per camera, untrained) on the simulator's top and wrist views."""
    config = PolicyConfig(
        kind="act", cameras=["top", "wrist"], image_size=96, chunk_size=20, execute_steps=10
    )
    zeros = {"mean": [0.0] * config.state_dim, "std": [1.0] * config.state_dim}
    actions = {"mean": [0.0] * config.action_dim, "std": [1.0] * config.action_dim}
    return save_policy(
        build_model(config), Normalizer({"state": zeros, "action": actions}), root, 1, labelling_run=None
    )


def paced_step_errors(policy, hz: float, steps: int) -> tuple[np.ndarray, int]:
    """|period - 1/hz| of every step (ms) of one paced episode on the simulator, and the steps held for want of an
    action."""
    robot = make_robot(RobotConfig(type="sim_box", sim_box=SimBoxConfig(control_hz=hz, max_steps=steps + 1)))
    robot.connect()
    times: list[float] = []
    try:
        result = run_episode(
            robot,
            policy,
            max_steps=steps,
            seed=0,
            realtime=True,
            on_step=lambda _s: times.append(time.monotonic()),
        )
    finally:
        robot.disconnect()
    return np.abs(np.diff(times) - 1.0 / hz) * 1e3, result.inference_holds


def jitter(checkpoints: dict[str, Path], steps: int) -> None:
    print(
        f"{'rate':>5} {'policy':>26} {'inference':>9} {'p50 err ms':>10} {'p99 err ms':>10} {'p99 % period':>12} "
        f"{'p99 vs floor':>12} {'held steps':>10}"
    )
    for hz in (10.0, 30.0):
        period = 1.0 / hz
        floor_times = []
        tick = time.monotonic()
        for _ in range(steps):
            tick += period
            time.sleep(max(0.0, tick - time.monotonic()))
            floor_times.append(time.monotonic())
        floor = np.abs(np.diff(floor_times) - period) * 1e3
        floor_p99 = float(np.percentile(floor, 99))
        print(
            f"{hz:>4.0f}Hz {'sleep only (floor)':>26} {'-':>9} {np.percentile(floor, 50):>10.2f} {floor_p99:>10.2f} "
            f"{floor_p99 / (period * 1e3):>11.1%} {1.0:>11.1f}x {'-':>10}"
        )
        cases = {
            "built-in (tiny)": (checkpoints["builtin"], 0.0),
            "ACT (default size)": (checkpoints["act"], 0.0),
            "built-in, 2-period inference": (checkpoints["builtin"], 2 * period),
        }
        for name, (checkpoint, delay) in cases.items():
            for mode in ("sync", "async"):
                policy = load_policy(checkpoint)
                if delay:
                    policy.__class__ = SlowPolicy
                    policy.delay_s = delay
                source = (
                    AsyncChunkPolicy(policy, InferenceConfig(mode="async")) if mode == "async" else policy
                )
                err, held = paced_step_errors(source, hz, steps)
                if mode == "async":
                    source.close()
                p50, p99 = np.percentile(err, 50), np.percentile(err, 99)
                print(
                    f"{hz:>4.0f}Hz {name:>26} {mode:>9} {p50:>10.2f} {p99:>10.2f} {p99 / (period * 1e3):>11.1%} "
                    f"{p99 / max(floor_p99, 1e-3):>11.1f}x {held:>10}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--jitter-only", action="store_true", help="skip the broadcast part (no Ray)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = tiny_checkpoint(Path(tmp) / "policy")
        if not args.jitter_only:
            broadcast(checkpoint, arms=4, repeats=args.repeats)
        jitter({"builtin": checkpoint, "act": act_checkpoint(Path(tmp) / "act")}, args.steps)


if __name__ == "__main__":
    main()
