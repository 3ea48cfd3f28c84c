"""How a training loop spent its time: waiting for the next batch versus the optimisation step."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LoopTiming:
    """Seconds a loop spent waiting on data and computing; both learners report samples/s and the wait fraction."""

    data_s: float = 0.0
    compute_s: float = 0.0

    def add(self, started: float, batch_ready: float, step_done: float) -> None:
        """One step: ``started`` -> ``batch_ready`` waited on data, ``batch_ready`` -> ``step_done`` computed."""
        self.data_s += batch_ready - started
        self.compute_s += step_done - batch_ready

    @property
    def loop_s(self) -> float:
        return max(self.data_s + self.compute_s, 1e-9)

    def samples_per_s(self, steps: int, batch_size: int) -> float:
        return steps * batch_size / self.loop_s

    @property
    def data_wait_fraction(self) -> float:
        return self.data_s / self.loop_s
