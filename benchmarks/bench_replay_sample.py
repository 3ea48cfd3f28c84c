"""Sampling throughput (batches/s at batch 64) of the replay DataLoader against LeRobotDataset's loader on the
same episodes, and against indexing numpy arrays already in memory (the ceiling).

The same episodes are written to a replay store and exported with ``replay.lerobot_io`` to a LeRobotDataset
(PNG frames, LeRobot's lossless image mode). "cold" is the first pass over the data in fresh workers (every
chunk decoded from disk); "warm" is later passes, served from each worker's decoded-chunk cache.

    .venv/bin/python benchmarks/bench_replay_sample.py [--episodes 16] [--steps 100] [--size 96]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from bench_replay_ingest import ACTION_DIM, CAMERAS, STATE_DIM, synthetic_episode
from rich.console import Console
from rich.table import Table

BATCH = 64


def batches_per_second(loader: Iterable, batches: int, warmup: int = 0) -> float:
    def endless() -> Iterator:
        while True:
            yield from loader

    stream = endless()
    for _ in range(warmup):
        next(stream)
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    return batches / (time.perf_counter() - start)


def build(scratch: Path, episodes: int, steps: int, size: int) -> tuple[str, Path, dict[str, np.ndarray]]:
    import datasets

    from replay import CameraSchema, ReplayStore, StoreSchema
    from replay.lerobot_io import export_to_lerobot

    datasets.disable_progress_bars()
    schema = StoreSchema(
        cameras=tuple(CameraSchema(c, size, size) for c in CAMERAS),
        state_names=tuple(f"s{i}" for i in range(STATE_DIM)),
        action_names=tuple(f"a{i}" for i in range(ACTION_DIM)),
        control_hz=10.0,
    )
    url = str(scratch / "store")
    store = ReplayStore.create(url, schema)
    memory: dict[str, list[np.ndarray]] = {k: [] for k in (*CAMERAS, "state")}
    for e in range(episodes):
        ep = synthetic_episode(size, steps, seed=e)
        with store.episode_writer(robot_id="arm0", round=0, policy_version="p0", task="bench") as writer:
            for t in range(steps):
                writer.add_step({c: ep[c][t] for c in CAMERAS}, ep["state"][t], ep["action"][t], t / 10.0)
            writer.commit("success", "bench")
        for k in memory:
            memory[k].append(ep[k])
    export_to_lerobot(store, scratch / "lerobot", repo_id="bench/sample")
    return url, scratch / "lerobot", {k: np.concatenate(v) for k, v in memory.items()}


def numpy_ceiling(memory: dict[str, np.ndarray]) -> Iterator[dict[str, torch.Tensor]]:
    rng = np.random.default_rng(0)
    n = len(memory["state"])
    while True:
        idx = np.sort(rng.integers(0, n, BATCH))
        yield {k: torch.from_numpy(v[idx]) for k, v in memory.items()}


def replay_loader(url: str, workers: int) -> torch.utils.data.DataLoader:
    from replay import FrameIndex, FrameSampler, ReplayStore
    from replay.dataset import FrameWindowDataset, make_loader

    store = ReplayStore.open(url)
    dataset = FrameWindowDataset(store, horizon=50, action_horizon=1)
    return make_loader(
        dataset, FrameSampler(FrameIndex(store), seed=0), batch_size=BATCH, num_workers=workers
    )


def lerobot_loader(root: Path, workers: int) -> torch.utils.data.DataLoader:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset("bench/sample", root=root, delta_timestamps={"observation.state": [0.0, 5.0]})
    return torch.utils.data.DataLoader(
        dataset, batch_size=BATCH, shuffle=True, num_workers=workers, persistent_workers=workers > 0
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batches", type=int, default=60, help="timed batches for the replay loader")
    parser.add_argument("--lerobot-batches", type=int, default=8, help="timed batches for LeRobot's loader")
    args = parser.parse_args()
    console = Console(width=140)
    scratch = Path(tempfile.mkdtemp(prefix="bench-sample-", dir=os.environ.get("BENCH_DIR")))
    frames = args.episodes * args.steps
    epoch = frames // BATCH
    rows: list[tuple[str, float]] = []
    try:
        t0 = time.perf_counter()
        url, lerobot_root, memory = build(scratch, args.episodes, args.steps, args.size)
        console.print(f"built {frames} frames in both formats in {time.perf_counter() - t0:.0f} s")
        rows.append(("numpy in memory (ceiling)", batches_per_second(numpy_ceiling(memory), 200)))
        for workers in (0, 2):
            rows.append(
                (
                    f"LeRobotDataset, {workers} workers",
                    batches_per_second(lerobot_loader(lerobot_root, workers), args.lerobot_batches, warmup=2),
                )
            )
            loader = replay_loader(url, workers)
            rows.append(
                (
                    f"vivarl replay, {workers} workers, cold",
                    batches_per_second(loader, min(epoch, args.batches)),
                )
            )
            rows.append(
                (
                    f"vivarl replay, {workers} workers, warm",
                    batches_per_second(loader, args.batches, warmup=epoch),
                )
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    lerobot = {w: dict(rows)[f"LeRobotDataset, {w} workers"] for w in (0, 2)}
    ceiling = rows[0][1]
    table = Table(
        title=f"sampling: batch {BATCH}, {args.episodes} episodes x {args.steps} steps, 3 cameras "
        f"{args.size}x{args.size}, state at t and t+50 ({os.cpu_count()} CPUs)"
    )
    for col in ("loader", "batches/s", "frames/s", "vs LeRobot (same workers)", "vs ceiling"):
        table.add_column(col, justify="right")
    for name, rate in rows:
        workers = 2 if "2 workers" in name else 0
        vs = "-" if name.startswith("numpy") else f"{rate / lerobot[workers]:.1f}x"
        table.add_row(name, f"{rate:,.1f}", f"{rate * BATCH:,.0f}", vs, f"{rate / ceiling:.2f}x")
    console.print(table)
    console.print(
        "LeRobot returns float CHW images decoded from PNG; replay returns uint8 HWC (convert on the GPU)."
    )


if __name__ == "__main__":
    main()
