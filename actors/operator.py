"""What passes between an arm's episode loop and the person at the arm: plain, thread-safe Python.

``OperatorChannel`` is written by the episode loop (what is happening now: the episode, its step count and
interventions, the newest camera frames) and by the operator console (the operator's word: end the episode, pause
the arm, the scene is reset, this episode succeeded). The loop never waits on the console except where the
protocol says a person must answer: the outcome (up to a time-out, then the episode is committed unlabelled and
can still be labelled later) and, on a real arm, the confirmation that the scene was reset before the next
episode. ``ConsoleOutcome`` is the outcome labeller that asks through it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from actors.outcome import FAILURE, SUCCESS, UNLABELLED
from robot_io.spec import Observation

# What the arm is doing, as the console shows it.
IDLE, RUNNING, LABELLING, WAITING_RESET = "idle", "running", "labelling", "waiting for reset"


@dataclass
class _Episode:
    episode_id: str = ""
    purpose: str = ""
    policy_version: str = ""
    steps: int = 0
    interventions: int = 0
    inference_holds: int = 0


@dataclass
class OperatorChannel:
    """See the module docstring; ``robot`` names the arm, ``clock`` is injectable for tests."""

    robot: str
    clock: Callable[[], float] = time.monotonic
    state: str = IDLE
    episode: _Episode = field(default_factory=_Episode)
    # The newest reading of the arm (the console encodes frames only when asked for them).
    observation: Observation | None = None
    # Outcomes given through the console, newest last: (episode_id, outcome).
    answers: list[tuple[str, str]] = field(default_factory=list)
    # The running episode's live value, (recorded step, value), and the steps at which the value model asked for
    # a takeover (actors.live_value).
    values: list[tuple[int, float]] = field(default_factory=list)
    help_steps: list[int] = field(default_factory=list)
    # A help request also asks the episode loop to hand control to the corrector (live_value.corrector_answers).
    corrector_answers: bool = False
    _takeover_requested: bool = False
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _end_requested: bool = False
    _paused: bool = False
    _reset_confirmed: bool = False
    # What the episode after the reset is for (demo: the operator drives the leader arm all through it).
    _next_purpose: str = ""
    _asked: str | None = None
    _answer: str | None = None
    # An outcome given for the running episode before it ends: it answers the question when it comes.
    _early: dict[str, str] = field(default_factory=dict)

    # -- the episode loop's side --------------------------------------------------------------------------
    def episode_started(self, episode_id: str, purpose: str, policy_version: str) -> None:
        with self._lock:
            self.episode = _Episode(episode_id, purpose, policy_version)
            self.state, self._end_requested = RUNNING, False
            self.values, self.help_steps = [], []
            self._takeover_requested = False
            self._lock.notify_all()

    def add_value(self, step: int, value: float, help_requested: bool) -> None:
        with self._lock:
            self.values.append((step, value))
            if help_requested:
                self.help_steps.append(step)
                self._takeover_requested = self._takeover_requested or self.corrector_answers

    def takeover_requested(self) -> bool:
        """Whether the corrector should take over now; each request is answered once."""
        with self._lock:
            requested, self._takeover_requested = self._takeover_requested, False
            return requested

    def observe(self, observation: Observation, intervention: bool, held: bool) -> None:
        with self._lock:
            self.observation = observation
            self.episode.steps += 1
            self.episode.interventions += int(intervention)
            self.episode.inference_holds += int(held)

    def end_requested(self) -> bool:
        with self._lock:
            return self._end_requested

    def paused(self) -> bool:
        with self._lock:
            return self._paused

    def ask_outcome(self, episode_id: str, timeout_s: float) -> str:
        """Block until the operator labels ``episode_id`` or ``timeout_s`` passes (then unlabelled)."""
        with self._lock:
            self.state, self._asked, self._answer = LABELLING, episode_id, self._early.pop(episode_id, None)
            self._lock.notify_all()
            self._lock.wait_for(lambda: self._answer is not None, timeout=timeout_s)
            answer, self._asked, self._answer = self._answer, None, None
            self.state = IDLE
            self._lock.notify_all()
        return answer or UNLABELLED

    def wait_for_reset(self, timeout_s: float | None = None, next_purpose: str = "") -> bool:
        """Block until the operator says the scene is reset for the next episode (True), or the time-out."""
        with self._lock:
            self.state, self._reset_confirmed, self._next_purpose = WAITING_RESET, False, next_purpose
            self._lock.notify_all()
            confirmed = self._lock.wait_for(lambda: self._reset_confirmed, timeout=timeout_s)
            self.state = IDLE
            self._lock.notify_all()
            return confirmed

    # -- the console's side -------------------------------------------------------------------------------
    def answer_outcome(self, episode_id: str, outcome: str) -> bool:
        """True when it answered the question the loop is waiting on, or will (given for the running episode);
        False when nobody is asking about that episode (the caller then labels the committed episode)."""
        if outcome not in (SUCCESS, FAILURE):
            raise ValueError(f"outcome must be {SUCCESS!r} or {FAILURE!r}, got {outcome!r}")
        with self._lock:
            self.answers.append((episode_id, outcome))
            if self._asked != episode_id:
                if self.state == RUNNING and self.episode.episode_id == episode_id:
                    self._early = {episode_id: outcome}  # the operator saw it succeed before it ended
                    return True
                return False
            self._answer = outcome
            self._lock.notify_all()
            return True

    def request_end(self) -> None:
        with self._lock:
            if self.state == RUNNING:
                self._end_requested = True

    def set_paused(self, paused: bool) -> None:
        with self._lock:
            self._paused = paused

    def confirm_reset(self) -> None:
        with self._lock:
            self._reset_confirmed = True
            self._lock.notify_all()

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "robot": self.robot,
                "state": self.state,
                "paused": self._paused,
                "end_requested": self._end_requested,
                "asking_about": self._asked,
                "next_purpose": self._next_purpose,
                "episode": dict(vars(self.episode)),
                "cameras": sorted(self.observation.images) if self.observation is not None else [],
                "values": self.values[-300:],
                "help_steps": self.help_steps[-20:],
            }


class ConsoleOutcome:
    """The outcome labeller of an arm with a console: the operator clicks success or failure (or presses s/f).

    Unanswered within ``timeout_s`` the episode is committed unlabelled; it stays listed on the console, and an
    answer given later is written to the committed episode.
    """

    def __init__(self, channel: OperatorChannel, timeout_s: float) -> None:
        self.channel = channel
        self.timeout_s = timeout_s

    def label(self, final_observation: Observation, episode_id: str) -> tuple[str, str | None]:
        outcome = self.channel.ask_outcome(episode_id, self.timeout_s)
        return outcome, ("operator-console" if outcome != UNLABELLED else None)
