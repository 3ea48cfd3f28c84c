"""Robot actors: policy-weight broadcast time to 1, 2 and 4 actors, and control-loop jitter at 10 and 30 Hz.

Run: ``.venv/bin/python benchmarks/bench_actors.py``. Broadcast is measured from ``ray.put`` of the packed
checkpoint until every actor has loaded the policy, against the floor of sending the same bytes to the same number
of trivial actors. Jitter runs the tiny built-in policy on the simulator paced at the control rate and reports the
p50/p99 error of the step period, against a loop that only sleeps to the same schedule (the floor).
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
from policy import Normalizer, PolicyConfig, build_model, load_policy, save_policy
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


def jitter(checkpoint: Path, steps: int) -> None:
    print(f"{'rate':>6} {'loop':>22} {'p50 err ms':>11} {'p99 err ms':>11} {'p99 vs floor':>13}")
    for hz in (10.0, 30.0):
        period = 1.0 / hz
        floor_times = []
        tick = time.monotonic()
        for _ in range(steps):
            tick += period
            time.sleep(max(0.0, tick - time.monotonic()))
            floor_times.append(time.monotonic())
        robot = make_robot(
            RobotConfig(type="sim_box", sim_box=SimBoxConfig(control_hz=hz, max_steps=steps + 1))
        )
        robot.connect()
        policy = load_policy(checkpoint)
        times: list[float] = []

        def stamp(_step, times=times) -> None:
            times.append(time.monotonic())

        run_episode(robot, policy, max_steps=steps, seed=0, realtime=True, on_step=stamp)
        robot.disconnect()
        rows = {"sleep only (floor)": floor_times, "sim + tiny policy": times}
        floor_p99 = None
        for name, stamps in rows.items():
            err = np.abs(np.diff(stamps) - period) * 1e3
            p50, p99 = np.percentile(err, 50), np.percentile(err, 99)
            floor_p99 = p99 if floor_p99 is None else floor_p99
            print(f"{hz:>5.0f}Hz {name:>22} {p50:>11.2f} {p99:>11.2f} {p99 / max(floor_p99, 1e-3):>12.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = tiny_checkpoint(Path(tmp) / "policy")
        broadcast(checkpoint, arms=4, repeats=args.repeats)
        jitter(checkpoint, args.steps)


if __name__ == "__main__":
    main()
