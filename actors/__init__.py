"""actors: what runs beside each arm.

Exposes the episode loop (``run_episode``), the ``ActionSource`` protocol a policy implements for it, and the
per-step and per-episode records (``Step``, ``EpisodeResult``). The loop is plain Python; the Ray actor that pins
it to the node wired to an arm wraps it.
"""

from actors.episode import (
    ActionSource,
    EpisodeResult,
    Step,
    TeleoperatorAsPolicy,
    episode_finished,
    run_episode,
)

__all__ = ["ActionSource", "EpisodeResult", "Step", "TeleoperatorAsPolicy", "episode_finished", "run_episode"]
