"""Simulator throughput: control steps per second with every camera rendered, against physics alone.

Run: ``.venv/bin/python benchmarks/bench_sim.py [--steps N]``. Each row drives the scripted expert through whole
episodes (so contacts, grasps and panel pushes are all exercised) and counts control steps; the physics-only row
is the same loop without rendering, measured in the same run as the baseline. The last two rows render the
default arm's three 64x64 cameras: through the simulator's own camera strip (every camera in one pass, one
read-back, no anti-aliasing: the default), as MuJoCo's ``Renderer`` does it (one camera and one read-back at a
time), and that way with 4x multisampling (the simulator before 2026-12-03); the ratios are the gains.
"""

from __future__ import annotations

import argparse
import time

from robot_io.config import SimBoxConfig
from robot_io.sim import BoxAssemblySim, ScriptedExpert

import mujoco  # isort: skip - after robot_io.sim, which picks the GL backend

DEFAULT_CAMERAS = ["front", "top", "wrist"]


def steps_per_second(
    height: int,
    width: int,
    render: bool,
    steps: int,
    cameras: list[str] | None = None,
    one_camera_at_a_time: bool = False,
    render_samples: int = 0,
) -> float:
    cameras = cameras or ["front", "wrist"]
    sim = BoxAssemblySim(
        SimBoxConfig(image_height=height, image_width=width, cameras=cameras, render_samples=render_samples)
    )
    sim.connect()
    renderer = mujoco.Renderer(sim.model, height, width) if one_camera_at_a_time else None
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
            obs = sim.get_observation(render=render and renderer is None)
            if renderer is not None:
                for camera in cameras:
                    renderer.update_scene(sim.data, camera=camera)
                    renderer.render()
            done += 1
        return done / (time.perf_counter() - start)
    finally:
        if renderer is not None:
            renderer.close()
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
    strip = steps_per_second(64, 64, True, args.steps, DEFAULT_CAMERAS)
    one_at_a_time = steps_per_second(64, 64, True, args.steps, DEFAULT_CAMERAS, one_camera_at_a_time=True)
    before = steps_per_second(64, 64, True, args.steps, DEFAULT_CAMERAS, True, render_samples=4)
    rows += [
        ("3 cameras 64x64, one strip (default)", strip),
        ("3 cameras, one at a time", one_at_a_time),
        ("3 cameras, one at a time, 4x MSAA", before),
    ]
    print(f"control steps per second ({args.steps} steps per row, 50 physics substeps each, scripted expert)")
    print(f"{'configuration':<36} {'steps/s':>9} {'ms/step':>8} {'vs physics':>11}")
    for name, rate in rows:
        print(f"{name:<36} {rate:9.1f} {1000 / rate:8.2f} {rate / baseline:10.2f}x")
    print(f"3 cameras 64x64: the strip {strip / one_at_a_time:.2f}x one camera at a time; the default")
    print(f"{strip / before:.2f}x the simulator before 2026-12-03 (one at a time, 4x MSAA), in steps/s")


if __name__ == "__main__":
    main()
