"""The main job before the improvement loop exists: a batch of scripted-expert episodes in the simulator,
saved as one video and a summary, so a lab can see the task, the expert and its suboptimality knobs at work."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from actors import EpisodeResult, Step, TeleoperatorAsPolicy, run_episode
from improve.config import VivarlConfig
from improve.report import tile_cameras
from robot_io import make_robot


def record_expert_batch(config: VivarlConfig) -> list[EpisodeResult]:
    robot_config = next(iter(config.robots.values()))
    if robot_config.type != "sim_box":
        raise SystemExit(
            f"vivarl: the scripted-expert batch needs a simulated arm (sim_box), got robot type "
            f"'{robot_config.type}' for '{robot_config.name}'"
        )
    from robot_io.sim import ScriptedExpert

    console = Console()
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    robot = make_robot(robot_config)
    robot.connect()
    expert = ScriptedExpert(robot.inner, robot_config.sim_box.expert, demo=True)
    policy = TeleoperatorAsPolicy(expert)
    cameras = robot.spec.camera_names
    frames: list[np.ndarray] = []

    def keep_frame(step: Step) -> None:
        if config.demo.video:
            frames.append(tile_cameras(step.observation.images, cameras))

    results = []
    try:
        with Progress(console=console, transient=True) as progress:
            bar = progress.add_task("expert episodes", total=config.demo.num_episodes)
            for index in range(config.demo.num_episodes):
                seed = config.demo.seed + index
                result = run_episode(
                    robot, policy, max_steps=robot_config.sim_box.max_steps, seed=seed, on_step=keep_frame
                )
                results.append(result)
                progress.advance(bar)
    finally:
        robot.disconnect()

    summary = {
        "robot": robot_config.name,
        "task": config.task.name,
        "expert": asdict(robot_config.sim_box.expert),
        "success_rate": float(np.mean([r.success for r in results])) if results else 0.0,
        "episodes": [r.summary() for r in results],
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if config.demo.video and frames:
        import imageio.v2 as imageio

        imageio.mimwrite(run_dir / "episodes.mp4", frames, fps=config.demo.video_fps, macro_block_size=1)
    console.print(_summary_table(results))
    console.print(
        f"success rate {summary['success_rate']:.0%}; wrote {run_dir}/summary.json"
        + (f" and {run_dir}/episodes.mp4" if config.demo.video else "")
    )
    return results


def _summary_table(results: list[EpisodeResult]) -> Table:
    table = Table(title="scripted-expert episodes")
    for column in ("seed", "steps", "success", "final progress", "safety interventions", "wall s"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            str(r.seed),
            str(r.steps),
            "yes" if r.success else "no",
            f"{r.final_progress:.2f}" if r.final_progress is not None else "-",
            str(sum(r.safety.values())),
            f"{r.wall_time_s:.1f}",
        )
    return table
