"""Simulator throughput: control steps per second with every camera rendered, against physics alone.

Run: ``.venv/bin/python benchmarks/bench_sim.py [--steps N]``. Each row drives the scripted expert through whole
episodes (so contacts, grasps and panel pushes are all exercised) and counts control steps; the physics-only row
is the same loop without rendering, measured in the same run as the baseline.
"""

from __future__ import annotations

import argparse
import time

from robot_io.config import SimBoxConfig
from robot_io.sim import BoxAssemblySim, ScriptedExpert


def steps_per_second(height: int, width: int, render: bool, steps: int) -> float:
    sim = BoxAssemblySim(SimBoxConfig(image_height=height, image_width=width, cameras=["front", "wrist"]))
    sim.connect()
    try:
        expert = ScriptedExpert(sim)
        done, seed = 0, 0
        obs = sim.start_episode(seed)
        start = time.perf_counter()
        while done < steps:
            if sim.episode_done:
                seed += 1
                obs = sim.start_episode(seed)
            sim.send_action(expert.get_action(obs))
            obs = sim.get_observation(render=render)
            done += 1
        return done / (time.perf_counter() - start)
    finally:
        sim.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="control steps per row")
    args = parser.parse_args()
    baseline = steps_per_second(64, 64, render=False, steps=args.steps)
    rows = [("physics only (no render)", baseline)]
    for size in (64, 224):
        rows.append(
            (f"step + render 2 cameras {size}x{size}", steps_per_second(size, size, True, args.steps))
        )
    print(f"control steps per second ({args.steps} steps per row, 50 physics substeps each, scripted expert)")
    print(f"{'configuration':<36} {'steps/s':>9} {'ms/step':>8} {'vs physics':>11}")
    for name, rate in rows:
        print(f"{name:<36} {rate:9.1f} {1000 / rate:8.2f} {rate / baseline:10.2f}x")


if __name__ == "__main__":
    main()
