"""One episode on one arm, streamed into the replay store as it happens and committed with its outcome.

If anything fails mid-episode (the arm, the policy, the process), the writer's context aborts the episode: its
flushed steps stay in the store's staging area as a torn episode that verify reports and no learner samples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from actors.episode import ActionSource, EpisodeResult, Step, run_episode
from actors.operator import OperatorChannel
from actors.outcome import OutcomeLabeller
from replay import ReplayStore, event_tags
from robot_io.robot import Robot, Teleoperator
from robot_io.spec import Observation


@dataclass
class CollectedEpisode:
    episode_id: str
    outcome: str
    labelled_by: str | None
    result: EpisodeResult


def collect_episode(
    robot: Robot,
    policy: ActionSource,
    store: ReplayStore,
    labeller: OutcomeLabeller,
    *,
    robot_id: str,
    task: str,
    round: int,
    policy_version: str,
    purpose: str,
    max_steps: int,
    seed: int | None = None,
    teleop: Teleoperator | None = None,
    realtime: bool = False,
    episode_events: Callable[[], Iterable[str]] | None = None,
    channel: OperatorChannel | None = None,
    success_detector: Callable[[Observation], bool] | None = None,
) -> CollectedEpisode:
    """Run one episode and commit it; ``teleop`` (human corrections) is only consulted when given.

    ``episode_events`` reports what happened beyond the steps (the simulated expert's pauses, retries, takeovers);
    their kinds are stored as the episode's tags, which value-model evaluation uses to pick suboptimal episodes.
    """
    with store.episode_writer(
        robot_id=robot_id,
        round=round,
        policy_version=policy_version,
        task=task,
        purpose=purpose,
        seed=seed,
        expected_steps=max_steps,
    ) as writer:

        def record(step: Step) -> None:
            writer.add_observation(step.observation, step.action, intervention=step.intervention)

        if channel is not None:
            channel.episode_started(writer.episode_id, purpose, policy_version)
        result = run_episode(
            robot,
            policy,
            max_steps=max_steps,
            seed=seed,
            teleop=teleop,
            on_step=record,
            realtime=realtime,
            control=channel,
            success_detector=success_detector,
        )
        if result.detected_success:
            outcome, labelled_by = "success", "success-detector"
        else:
            outcome, labelled_by = labeller.label(result.final_observation, writer.episode_id)
        events = tuple(episode_events()) if episode_events is not None else ()
        writer.commit(outcome, labelled_by=labelled_by, tags=event_tags(events))
    return CollectedEpisode(writer.episode_id, outcome, labelled_by, result)
