"""actors: what runs beside each arm.

Exposes the episode loop (``run_episode``), the ``ActionSource`` protocol a policy implements for it, and the
per-step and per-episode records (``Step``, ``EpisodeResult``). The loop is plain Python; the Ray actor that pins
it to the node wired to an arm wraps it (``actors.robot_actor``: ``RobotWorker``, plain Python itself).

The same worker without Ray, for the results scripts, benchmarks and tests (``actors.local``): ``sim_arm`` (the
simulated arm as its Hydra config makes it), ``record_demonstrations`` (scripted-expert episodes into a store)
and ``evaluate_policy`` (a checkpoint deployed and run alone on fixed seeds, summarised as an
``EvaluationSummary``).
"""

from actors.episode import (
    ActionSource,
    EpisodeResult,
    Step,
    TeleoperatorAsPolicy,
    episode_finished,
    run_episode,
)
from actors.local import EvaluationSummary, evaluate_policy, record_demonstrations, sim_arm

__all__ = [
    "ActionSource",
    "EpisodeResult",
    "EvaluationSummary",
    "Step",
    "TeleoperatorAsPolicy",
    "episode_finished",
    "evaluate_policy",
    "record_demonstrations",
    "run_episode",
    "sim_arm",
]
