"""The robot actor's episodes without Ray, for the results scripts, benchmarks and tests.

Everything here goes through ``RobotWorker`` (the loop's own episode runner, behind the safety layer), so a study's
demonstrations and evaluations are recorded exactly as the overnight system records its own: same loop, same
outcome labels, same metadata (purpose, seed, tags). One worker per call: it connects the arm, runs the seeds and
disconnects.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from actors.robot_actor import ActorSettings, RobotWorker
from actors.weights import PackedCheckpoint, pack_checkpoint
from replay import EpisodeMeta
from robot_io import RobotConfig
from robot_io.config import ExpertConfig, SimBoxConfig
from robot_io.safety import SafetyConfig

TASK = "box_assembly"


def sim_arm(sim_box: SimBoxConfig, expert: ExpertConfig | None = None, name: str = "sim0") -> RobotConfig:
    """The simulated arm as ``configs/robot/sim_box.yaml`` makes it, with ``expert`` (if given) as its expert.

    Its safety watchdog is off, as there: the simulator only moves when stepped, so a hold sent by the watchdog
    while a slow step (a loaded machine) keeps the loop away would advance the episode and change it.
    """
    sim_box = sim_box if expert is None else replace(sim_box, expert=expert)
    return RobotConfig(
        type="sim_box", name=name, sim_box=sim_box, safety=SafetyConfig(watchdog_timeout_s=0.0)
    )


def record_demonstrations(
    store_url: str, robot: RobotConfig, seeds: Iterable[int], *, round: int = 0, task: str = TASK
) -> list[EpisodeMeta]:
    """One demonstration per seed (on the simulator: the scripted expert with ``robot.sim_box.expert``'s knobs),
    committed to the store at ``store_url`` (created from the arm's spec if new); returns the committed episodes."""
    worker = RobotWorker(ActorSettings(robot=robot, store_url=store_url, task=task))
    try:
        summaries = worker.run_episodes("demo", round, [int(s) for s in seeds])
        return [worker.store.record(s["episode_id"]).meta for s in summaries]
    finally:
        worker.close()


@dataclass(frozen=True)
class EvaluationSummary:
    episodes: int
    success_rate: float
    mean_progress: float
    """Mean task progress at the episode's end."""
    mean_steps_success: float
    """Mean length of the successful episodes (NaN when none succeeded)."""
    failures: int
    successes: dict[int, bool]
    """Seed -> success, for comparing two policies evaluated on the same seeds episode by episode."""


def evaluate_policy(
    checkpoint: str | Path,
    store_url: str,
    robot: RobotConfig,
    seeds: Iterable[int],
    *,
    version: str,
    overrides: Mapping[str, Any] | None = None,
    round: int = 0,
    task: str = TASK,
    device: str = "cpu",
) -> EvaluationSummary:
    """Deploy a policy checkpoint (a version folder or a root's newest) on the arm and run it alone once per seed
    ("eval" episodes, committed to ``store_url`` under policy version ``version``).

    ``overrides`` change deployment fields of the checkpoint's config (``deploy_indicator``, ``cfg_beta``, ...),
    as ``policy.load_policy``'s keyword arguments do: they are written into the config the actor loads.
    """
    packed = deployment(checkpoint, version, overrides or {})
    worker = RobotWorker(ActorSettings(robot=robot, store_url=store_url, task=task, device=device))
    try:
        worker.set_policy(packed, load_now=True)
        summaries = worker.run_episodes("eval", round, [int(s) for s in seeds])
    finally:
        worker.close()
    return summarise(summaries)


def deployment(checkpoint: str | Path, version: str, overrides: Mapping[str, Any]) -> PackedCheckpoint:
    """The checkpoint packed for an actor, its config's deployment fields replaced by ``overrides``."""
    from policy.checkpoint import CONFIG_FILE, resolve_checkpoint
    from policy.config import PolicyConfig

    packed = pack_checkpoint(resolve_checkpoint(checkpoint), version)
    if not overrides:
        return packed
    config = PolicyConfig.from_dict({**json.loads(packed.files[CONFIG_FILE]), **overrides})
    return replace(packed, files={**packed.files, CONFIG_FILE: json.dumps(config.to_dict()).encode()})


def summarise(summaries: list[dict]) -> EvaluationSummary:
    """Success rate, final progress and lengths of ``RobotWorker.run_episodes`` summaries."""
    if not summaries:
        raise ValueError("no episodes to summarise: evaluate on at least one seed")
    successes = [bool(s["success"]) for s in summaries]
    lengths = [s["steps"] for s in summaries if s["success"]]
    return EvaluationSummary(
        episodes=len(summaries),
        success_rate=float(np.mean(successes)),
        # A real arm reports no progress: NaN then, as for a mean over no successes.
        mean_progress=float(
            np.mean([np.nan if s["final_progress"] is None else s["final_progress"] for s in summaries])
        ),
        mean_steps_success=float(np.mean(lengths)) if lengths else float("nan"),
        failures=len(successes) - sum(successes),
        successes={int(s["seed"]): success for s, success in zip(summaries, successes, strict=True)},
    )
