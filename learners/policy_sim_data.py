"""Simulated data and evaluation for experiments: scripted-expert episodes recorded into a replay store (the
policy and value results scripts, the end-to-end tests), and a policy rolled out in the simulator
(``scripts/results_policy.py``); the overnight system records through actors instead. Imports MuJoCo (through robot_io.sim) when called.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from replay import Outcome, ReplayStore, StoreSchema, event_tags
from robot_io.config import ExpertConfig, SimBoxConfig


@dataclass
class RecordedEpisode:
    episode_id: str
    seed: int
    length: int
    success: bool
    tags: tuple[str, ...] = ()
    """What the expert's knobs made happen ("pause", "retry", "drop", ...), also stored with the episode."""


def open_sim_store(url: str, sim_config: SimBoxConfig) -> ReplayStore:
    """A replay store laid out for the box-assembly simulator with ``sim_config``'s cameras and image size."""
    from robot_io.sim import BoxAssemblySim

    sim = BoxAssemblySim(sim_config)
    return ReplayStore.open_or_create(url, StoreSchema.from_robot_spec(sim.spec))


def record_expert_episodes(
    store: ReplayStore,
    sim_config: SimBoxConfig,
    expert_config: ExpertConfig,
    seeds: Iterable[int],
    *,
    round_index: int = 0,
    task: str = "box_assembly",
    robot_id: str = "sim0",
) -> list[RecordedEpisode]:
    """Run the scripted expert (demo mode, knobs from ``expert_config``) once per seed and commit each episode
    with its outcome (success, or failure by drop or time-out) labelled by the simulator, and with the expert's
    event kinds as tags, as the actors record them."""
    from robot_io.sim import BoxAssemblySim, ScriptedExpert, run_expert_episode

    sim = BoxAssemblySim(sim_config)
    sim.connect()
    recorded = []
    try:
        for seed in seeds:
            expert = ScriptedExpert(sim, expert_config)
            steps = run_expert_episode(sim, expert, int(seed))
            success = bool(sim.info()["success"])
            tags = event_tags(expert.events)
            with store.episode_writer(
                robot_id=robot_id, round=round_index, policy_version="scripted-expert", task=task
            ) as writer:
                for observation, action in steps:
                    writer.add_observation(observation, action)
                writer.commit(
                    Outcome.SUCCESS if success else Outcome.FAILURE, labelled_by="simulator", tags=tags
                )
            recorded.append(RecordedEpisode(writer.episode_id, int(seed), len(steps), success, tags))
    finally:
        sim.disconnect()
    return recorded


@dataclass
class EvaluationResult:
    episodes: int
    success_rate: float
    mean_progress: float
    mean_steps_success: float
    failures: int


def evaluate_policy(policy: object, sim_config: SimBoxConfig, seeds: Iterable[int]) -> EvaluationResult:
    """Roll ``policy`` (an ``ActionSource``: reset(seed), act(observation)) out once per seed in the simulator."""
    from robot_io.sim import BoxAssemblySim

    sim = BoxAssemblySim(sim_config)
    sim.connect()
    successes, progress, lengths = [], [], []
    try:
        for seed in seeds:
            policy.reset(seed)  # type: ignore[attr-defined]
            observation = sim.start_episode(int(seed))
            # A dropped item is a final failure in the simulator's terms; stop there rather than run out the clock.
            while not sim.episode_done and not sim.dropped:
                sim.send_action(policy.act(observation))  # type: ignore[attr-defined]
                observation = sim.get_observation()
            info = sim.info()
            successes.append(info["success"] >= 1.0)
            progress.append(info["progress"])
            if successes[-1]:
                lengths.append(sim.step_count)
    finally:
        sim.disconnect()
    return EvaluationResult(
        episodes=len(successes),
        success_rate=float(np.mean(successes)),
        mean_progress=float(np.mean(progress)),
        mean_steps_success=float(np.mean(lengths)) if lengths else float("nan"),
        failures=int(len(successes) - np.sum(successes)),
    )
