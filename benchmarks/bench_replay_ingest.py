"""Ingest throughput of the replay store against raw numpy (the floor) and LeRobotDataset (the baseline).

Each writer is its own process (as actors are) and writes whole episodes of 3 cameras. Wall time runs from a
barrier that all writers pass after generating their frames until the last one has committed.

    .venv/bin/python benchmarks/bench_replay_ingest.py [--steps 100] [--episodes 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

CAMERAS = ("front", "wrist", "top")
STATE_DIM = ACTION_DIM = 7


def synthetic_episode(size: int, steps: int, seed: int) -> dict[str, np.ndarray]:
    """Camera-like frames (smooth scene, a moving object, sensor noise) so compression is realistic."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.stack([xx * 255 // size, yy * 255 // size, (xx + yy) * 127 // size], -1).astype(np.int16)
    out = {}
    for k, cam in enumerate(CAMERAS):
        frames = np.empty((steps, size, size, 3), np.uint8)
        for t in range(steps):
            cx, cy = (t * 2 + 17 * k) % size, (t + 31 * k) % size
            blob = ((xx - cx) ** 2 + (yy - cy) ** 2 < (size // 8) ** 2)[..., None] * np.int16(90)
            noise = rng.integers(-3, 4, (size, size, 3), dtype=np.int16)
            frames[t] = np.clip(base + blob + noise, 0, 255)
        out[cam] = frames
    out["state"] = rng.standard_normal((steps, STATE_DIM)).astype(np.float32)
    out["action"] = rng.standard_normal((steps, ACTION_DIM)).astype(np.float32)
    return out


def episode_bytes(ep: dict[str, np.ndarray]) -> int:
    return sum(v.nbytes for v in ep.values())


def write_raw(root: Path, ep: dict[str, np.ndarray], name: str) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    for key, values in ep.items():
        np.save(folder / f"{key}.npy", values)


def write_replay(url: str, ep: dict[str, np.ndarray], name: str) -> None:
    from replay import ReplayStore

    store = ReplayStore.open(url)
    steps = len(ep["state"])
    with store.episode_writer(robot_id=name, round=0, policy_version="p0", task="bench") as writer:
        for t in range(steps):
            writer.add_step({c: ep[c][t] for c in CAMERAS}, ep["state"][t], ep["action"][t], t / 10.0)
        writer.commit("success", "bench")


def write_lerobot(root: Path, episodes: list[dict[str, np.ndarray]], size: int) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    features = {
        f"observation.images.{c}": {
            "dtype": "image",
            "shape": (size, size, 3),
            "names": ["height", "width", "channels"],
        }
        for c in CAMERAS
    }
    features["observation.state"] = {"dtype": "float32", "shape": (STATE_DIM,), "names": None}
    features["action"] = {"dtype": "float32", "shape": (ACTION_DIM,), "names": None}
    dataset = LeRobotDataset.create("bench/ingest", fps=10, features=features, root=root, use_videos=False)
    for ep in episodes:
        for t in range(len(ep["state"])):
            frame = {f"observation.images.{c}": ep[c][t] for c in CAMERAS}
            dataset.add_frame(
                {**frame, "observation.state": ep["state"][t], "action": ep["action"][t], "task": "bench"}
            )
        dataset.save_episode()
    dataset.finalize()


def worker(
    kind: str, target: str, worker_id: int, size: int, steps: int, episodes: int, barrier, results
) -> None:
    import datasets

    datasets.disable_progress_bars()
    eps = [synthetic_episode(size, steps, seed=worker_id * 100 + e) for e in range(episodes)]
    if kind == "lerobot":
        from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: F401 - import outside the clock
    else:
        import replay  # noqa: F401
    barrier.wait()
    start = time.perf_counter()
    if kind == "raw":
        for e, ep in enumerate(eps):
            write_raw(Path(target), ep, f"w{worker_id}-e{e}")
    elif kind == "replay":
        for e, ep in enumerate(eps):
            write_replay(target, ep, f"w{worker_id}-e{e}")
    else:
        write_lerobot(Path(target) / f"w{worker_id}", eps, size)
    results.put((start, time.perf_counter(), sum(episode_bytes(ep) for ep in eps), steps * episodes))


def run(kind: str, writers: int, size: int, steps: int, episodes: int, scratch: Path) -> tuple[float, float]:
    target = scratch / f"{kind}-{writers}-{size}"
    if kind == "replay":
        from replay import CameraSchema, ReplayStore, StoreSchema

        schema = StoreSchema(
            cameras=tuple(CameraSchema(c, size, size) for c in CAMERAS),
            state_names=tuple(f"s{i}" for i in range(STATE_DIM)),
            action_names=tuple(f"a{i}" for i in range(ACTION_DIM)),
            control_hz=10.0,
        )
        ReplayStore.create(str(target), schema)
    else:
        target.mkdir(parents=True)
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(writers), ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(kind, str(target), w, size, steps, episodes, barrier, results))
        for w in range(writers)
    ]
    for p in procs:
        p.start()
    rows = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    wall = max(r[1] for r in rows) - min(r[0] for r in rows)
    frames = sum(r[3] for r in rows)
    shutil.rmtree(target, ignore_errors=True)
    return frames / wall, sum(r[2] for r in rows) / wall / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="steps per episode")
    parser.add_argument("--episodes", type=int, default=2, help="episodes per writer")
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 224])
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    console = Console(width=140)
    scratch = Path(tempfile.mkdtemp(prefix="bench-ingest-", dir=os.environ.get("BENCH_DIR")))
    table = Table(
        title=f"ingest: 3 cameras, {args.steps} steps x {args.episodes} episodes per writer ({os.cpu_count()} CPUs)"
    )
    for col in ("image", "writers", "method", "frames/s", "MB/s", "vs LeRobot", "vs raw numpy"):
        table.add_column(col, justify="right")
    try:
        for size in args.sizes:
            for writers in args.writers:
                measured = {
                    k: run(k, writers, size, args.steps, args.episodes, scratch)
                    for k in ("raw", "replay", "lerobot")
                }
                for kind, label in (
                    ("raw", "raw numpy (floor)"),
                    ("replay", "vivarl replay"),
                    ("lerobot", "LeRobotDataset"),
                ):
                    fps, mbps = measured[kind]
                    table.add_row(
                        f"{size}x{size}",
                        str(writers),
                        label,
                        f"{fps:,.0f}",
                        f"{mbps:,.0f}",
                        f"{fps / measured['lerobot'][0]:.1f}x",
                        f"{fps / measured['raw'][0]:.2f}x",
                    )
                console.print(f"done {size}x{size} with {writers} writers")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    console.print(table)
    console.print(
        "frames/s counts control steps (3 images + state + action each); MB/s is uncompressed input bytes."
    )


if __name__ == "__main__":
    main()
