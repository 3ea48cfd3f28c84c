"""Arm utilisation, successes per wall-hour and staleness: the main command in loop.mode=continual against the
pipeline (the baseline), one run each, same machine, same settings, one after the other.

Run: ``.venv/bin/python benchmarks/bench_utilisation.py [--size small|default] [--out DIR] [-- overrides...]``.
Each mode is one ``vivarl`` run; the numbers are read back from its ``run_state.json``:

- arm use: the share of the wall time of rounds 1.. the arms spent in episodes (round 0 has no policy to run
  rollouts with, so it is the same in both modes and is left out);
- successes per wall-hour: evaluation successes of the final round's policy on the fixed seeds, per hour of the
  run's whole wall time (each round's wall time counts, as a lab's night does);
- staleness: median commit-to-label seconds of the rollouts, and from a policy's training to its first rollout.

``--size small`` (the default) is the loop's end-to-end test size (minutes; its success figures mean little);
``--size default`` is the main command's own size (about an hour for both).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SMALL = [
    "loop.rounds=2",
    "loop.demo_episodes=4",
    "loop.episodes_per_round=6",
    "loop.eval_episodes=10",
    "value_learner.steps=40",
    "value_learner.warm_start_steps=20",
    "loop.backbone.vae_steps=20",
    "loop.backbone.video_steps=20",
    "policy_learner.steps=60",
    "robots.sim0.sim_box.max_steps=150",
    "robots.sim1.sim_box.max_steps=150",
]
VIVARL = str(Path(sys.executable).with_name("vivarl"))


def run_mode(out: Path, mode: str, overrides: list[str]) -> dict[str, float]:
    run_dir = out / mode
    if run_dir.exists():
        # A finished run would only be resumed: its wall time would be the resume's, not the run's.
        shutil.rmtree(run_dir)
    env = {**os.environ, "WANDB_MODE": "offline", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    started = time.monotonic()
    with open(out / f"{mode}.log", "w") as log:
        subprocess.run(
            [VIVARL, f"run_dir={run_dir}", f"loop.mode={mode}", "wandb.mode=offline", *overrides],
            stdout=log, stderr=subprocess.STDOUT, env=env, check=True,
        )  # fmt: skip
    wall_s = time.monotonic() - started
    state = json.loads((run_dir / "run_state.json").read_text())
    rounds = sorted(int(r) for r in state["rounds"])
    final = state["rounds"][str(rounds[-1])]
    later = [state["rounds"][str(r)] for r in rounds if r > 0]
    seconds = [o["ended_at"] - o["started_at"] for o in later]
    busy = sum(o["metrics"]["arms/utilisation_mean"] * s for o, s in zip(later, seconds, strict=True))
    span = sum(seconds)
    successes = sum(final["eval_outcomes"].values())

    def median(key: str) -> float:
        values = [o["metrics"][key] for o in later if key in o["metrics"]]
        return float(np.median(values)) if values else float("nan")

    return {
        "wall_min": wall_s / 60,
        "arm_use": busy / span if span else float("nan"),
        "final_success": successes / len(final["eval_outcomes"]),
        "successes_per_wall_hour": successes / (wall_s / 3600),
        "label_staleness_s": median("staleness/label_s"),
        "policy_first_use_s": median("staleness/policy_first_use_s"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=("small", "default"), default="small")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_utilisation"))
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for both runs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    overrides = (SMALL if args.size == "small" else []) + list(args.overrides)
    results = {mode: run_mode(args.out, mode, overrides) for mode in ("pipeline", "continual")}
    base = results["pipeline"]
    print(f"size {args.size}; overrides: {' '.join(overrides) or '(none)'}")
    print(f"{'mode':>10} {'wall min':>9} {'arm use':>8} {'vs pipe':>8} {'final succ':>10} {'succ/wall-h':>11} "
          f"{'vs pipe':>8} {'label wait s':>12} {'policy->1st rollout s':>21}")  # fmt: skip
    for mode, r in results.items():
        print(
            f"{mode:>10} {r['wall_min']:9.1f} {r['arm_use']:8.0%} {r['arm_use'] / base['arm_use']:7.2f}x "
            f"{r['final_success']:10.0%} {r['successes_per_wall_hour']:11.1f} "
            f"{r['successes_per_wall_hour'] / max(base['successes_per_wall_hour'], 1e-9):7.2f}x "
            f"{r['label_staleness_s']:12.0f} {r['policy_first_use_s']:21.0f}"
        )
    (args.out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
