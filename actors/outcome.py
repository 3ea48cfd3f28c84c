"""Who says whether an episode succeeded: the simulator knows; on a real arm an operator is asked, with a time-out.

An episode nobody labelled stays ``unlabelled``: it is kept, but never used as a value target.
"""

from __future__ import annotations

import os
import select
import sys
from typing import Protocol

from robot_io.spec import Observation

SUCCESS, FAILURE, UNLABELLED = "success", "failure", "unlabelled"


class OutcomeLabeller(Protocol):
    def label(self, final_observation: Observation, episode_id: str) -> tuple[str, str | None]:
        """Return (outcome, who labelled it); the outcome is "success", "failure" or "unlabelled"."""
        ...


class SimulatorOutcome:
    """Ground truth from the simulator's ``info``: every stage holds at the end, or not."""

    def label(self, final_observation: Observation, episode_id: str) -> tuple[str, str | None]:
        if "success" not in final_observation.info:
            raise ValueError(
                "the robot reports no ground-truth 'success'; use outcome_source='operator' for a real arm"
            )
        return (SUCCESS if final_observation.info["success"] >= 1.0 else FAILURE), "simulator"


class OperatorPrompt:
    """Asks on the terminal of the node wired to the arm, where the operator stands.

    Reads one line from ``/dev/tty`` (or stdin when it is a terminal) within ``timeout_s``; with no terminal or no
    answer in time the episode stays unlabelled, so an unattended overnight run never blocks on a prompt.
    """

    ANSWERS = {"y": SUCCESS, "yes": SUCCESS, "s": SUCCESS, "n": FAILURE, "no": FAILURE, "f": FAILURE}

    def __init__(self, timeout_s: float = 20.0, operator: str = "operator") -> None:
        self.timeout_s = timeout_s
        self.operator = operator

    def label(self, final_observation: Observation, episode_id: str) -> tuple[str, str | None]:
        terminal = _open_terminal()
        if terminal is None:
            return UNLABELLED, None
        with terminal:
            print(
                f"[vivarl] episode {episode_id}: success? [y/n] ({self.timeout_s:.0f} s, then unlabelled) ",
                end="",
                flush=True,
                file=sys.stderr,
            )
            ready, _, _ = select.select([terminal], [], [], self.timeout_s)
            if not ready:
                print("\n[vivarl] no answer: left unlabelled", file=sys.stderr)
                return UNLABELLED, None
            answer = terminal.readline().strip().lower()
        outcome = self.ANSWERS.get(answer, UNLABELLED)
        return outcome, (self.operator if outcome != UNLABELLED else None)


def _open_terminal():
    if sys.stdin is not None and sys.stdin.isatty():
        return os.fdopen(os.dup(sys.stdin.fileno()))
    try:
        return open("/dev/tty")  # noqa: SIM115 - the caller closes it
    except OSError:
        return None


def make_labeller(source: str, timeout_s: float = 20.0) -> OutcomeLabeller:
    if source == "simulator":
        return SimulatorOutcome()
    if source == "operator":
        return OperatorPrompt(timeout_s)
    raise ValueError(f"unknown outcome source '{source}': use 'simulator' or 'operator'")
