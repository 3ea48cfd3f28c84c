"""Run as a script: write episodes into a store from its own process (crash and concurrency tests).

    python writer_proc.py STORE_URL FIRST_SEED COUNT [--crash] [--step-sleep S]

Committed episode ``seed`` has length ``episode_length(seed)`` and task ``seed-<seed>``. With ``--crash`` it then
starts one more episode, flushes part of it, prints ``READY <episode_id>`` and keeps writing until killed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from episode_data import add_steps, expected_episode, write_episode

from replay import ReplayStore

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def writer_command(url: str, first_seed: int, count: int, *extra: str) -> list[str]:
    return [sys.executable, str(HERE / "writer_proc.py"), url, str(first_seed), str(count), *extra]


def writer_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO)])}


def episode_length(seed: int) -> int:
    return 10 + seed % 7


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("first_seed", type=int)
    parser.add_argument("count", type=int)
    parser.add_argument("--crash", action="store_true")
    parser.add_argument("--step-sleep", type=float, default=0.0)
    args = parser.parse_args()
    store = ReplayStore.open(args.url)
    for seed in range(args.first_seed, args.first_seed + args.count):
        write_episode(store, seed, episode_length(seed), robot_id=f"proc{args.first_seed}", flush_steps=4)
        time.sleep(args.step_sleep * episode_length(seed))
    if not args.crash:
        return
    data = expected_episode(999, 1000)
    writer = store.episode_writer(robot_id="doomed", round=0, policy_version="p0", task="torn", flush_steps=4)
    add_steps(writer, data, 0, 10)
    writer.flush()
    print("READY", writer.episode_id, flush=True)
    t = 10
    while True:
        add_steps(writer, data, t % 1000, t % 1000 + 1)
        t += 1
        time.sleep(0.002)


if __name__ == "__main__":
    main()
