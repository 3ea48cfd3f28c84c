"""The deployed value model watching an episode as it runs, off the control thread: a few times a second it scores
the arm's newest observation, the console plots the curve, and a fall of the value within a short window asks the
operator to take over (ViVa is failure-aware: its value drops when an episode starts going wrong).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from actors.operator import RUNNING, OperatorChannel

log = logging.getLogger(__name__)


@dataclass
class LiveValueConfig:
    """How often the arm's episode is scored, and when a falling value asks for a takeover."""

    # Score the newest observation this often (Hz); 0 turns live scoring off.
    rate_hz: float = 4.0
    # Ask for a takeover when the value (model range [-1, 1]) falls by more than this within window_s.
    drop: float = 0.3
    window_s: float = 2.0
    # The corrector answers every request by taking over (the simulator's scripted corrector, whose own stall
    # rule is robots.<arm>.sim_box.expert.takeover_stall_steps; 0 turns it off). On a real arm a person answers,
    # from the console's highlight and sound. Live value needs the console (console.enabled=on in simulation).
    corrector_answers: bool = False

    def __post_init__(self) -> None:
        if self.rate_hz < 0 or self.drop <= 0 or self.window_s <= 0:
            raise ValueError("live_value.rate_hz must be >= 0, live_value.drop and live_value.window_s > 0")


class HelpRule:
    """True at the first score that lies more than ``drop`` below the highest score of the last ``window_s``
    seconds; quiet again until the value has recovered to within ``drop`` of that window's high."""

    def __init__(self, drop: float, window_s: float) -> None:
        self.drop, self.window_s = drop, window_s
        self._recent: deque[tuple[float, float]] = deque()
        self._asked = False

    def update(self, now: float, value: float) -> bool:
        self._recent.append((now, value))
        while self._recent and now - self._recent[0][0] > self.window_s:
            self._recent.popleft()
        fallen = max(v for _, v in self._recent) - value > self.drop
        ask = fallen and not self._asked
        self._asked = fallen
        return ask


class LiveValue:
    """Scores ``channel``'s newest observation with ``score(images, state)`` while an episode runs; ``stop`` ends."""

    def __init__(
        self,
        channel: OperatorChannel,
        score: Callable[..., float],
        config: LiveValueConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.channel, self.score, self.config, self.clock = channel, score, config or LiveValueConfig(), clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vivarl-live-value", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10.0)

    def _run(self) -> None:
        period = 1.0 / self.config.rate_hz
        episode, rule, last = None, HelpRule(self.config.drop, self.config.window_s), None
        while not self._stop.wait(period):
            snapshot = self.channel.snapshot()
            observation = self.channel.observation
            if snapshot["state"] != RUNNING or observation is None or observation is last:
                continue
            if snapshot["episode"]["episode_id"] != episode:
                episode, rule = (
                    snapshot["episode"]["episode_id"],
                    HelpRule(self.config.drop, self.config.window_s),
                )
            last = observation
            try:
                value = self.score(observation.images, observation.state)
            except Exception:  # noqa: BLE001 - a broken scorer must not take the arm's actor down
                log.exception("live value scoring failed; live value is off for this arm")
                return
            self.channel.add_value(snapshot["episode"]["steps"], value, rule.update(self.clock(), value))
