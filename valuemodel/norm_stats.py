"""What a value model needs at inference beyond its weights: its data's normalisation, saved beside every published
checkpoint as its norm stats (``ValueDataStats``), and the state mapping onto [-1, 1] that uses them. The value
learner fixes them per training run (``learners.value_data.compute_value_stats``); labelling, evaluation and the
arms' live scoring read them back, so every consumer normalises exactly as training did."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

# A state dimension that never moved still maps to 0 rather than dividing by zero.
MIN_STATE_RANGE = 1e-6


@dataclass
class ValueDataStats:
    """Everything data-dependent that a value model needs at inference; stored as the checkpoint's norm stats."""

    task_names: list[str]
    """Replay task names; position i is ``ValueModelConfig.tasks[i]`` (the model's task id i)."""
    state_min: dict[str, list[float]]
    """Per task, per state dimension: the smallest recorded value (maps to -1)."""
    state_max: dict[str, list[float]]
    """Per task, per state dimension: the largest recorded value (maps to +1)."""
    max_episode_length: dict[str, int]
    """Per task L_max of the value target: steps to go are normalised by it."""
    failure_penalty: float | None = None
    """C_fail in steps (None: C_fail = L_max), as in ``valuemodel.targets``."""
    horizon: int = 50
    """Steps between the state and the future state the model predicts (ViVa)."""
    frame_stride: int = 1
    """WVM: control steps between window frames (inference must use the training stride)."""
    provenance: dict[str, Any] = field(default_factory=dict)
    """What produced the checkpoint (round, steps, episodes); informational only."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValueDataStats:
        return cls(
            task_names=[str(t) for t in data["task_names"]],
            state_min={k: list(map(float, v)) for k, v in data["state_min"].items()},
            state_max={k: list(map(float, v)) for k, v in data["state_max"].items()},
            max_episode_length={k: int(v) for k, v in data["max_episode_length"].items()},
            failure_penalty=data.get("failure_penalty"),
            horizon=int(data.get("horizon", 50)),
            frame_stride=int(data.get("frame_stride", 1)),
            provenance=dict(data.get("provenance", {})),
        )

    def task_id(self, task: str) -> int:
        try:
            return self.task_names.index(task)
        except ValueError:
            raise KeyError(
                f"replay task {task!r} is not one of the value model's tasks {self.task_names}; add it to "
                "value_learner.task_names (and its instruction to valuemodel.tasks)"
            ) from None


def _state_range(tasks: Sequence[str], stats: ValueDataStats) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, D) low and (B, D) width of each sample's task range (widths floored at ``MIN_STATE_RANGE``)."""
    low = torch.tensor(np.array([stats.state_min[t] for t in tasks]), dtype=torch.float32)
    high = torch.tensor(np.array([stats.state_max[t] for t in tasks]), dtype=torch.float32)
    return low, (high - low).clamp_min(MIN_STATE_RANGE)


def normalise_state(state: torch.Tensor, tasks: Sequence[str], stats: ValueDataStats) -> torch.Tensor:
    """(B, D) raw proprioception -> [-1, 1] with each sample's task range; values outside it are clipped."""
    low, width = _state_range(tasks, stats)
    return (2.0 * (state.float() - low) / width - 1.0).clamp(-1.0, 1.0)


def denormalise_state(state: torch.Tensor, tasks: Sequence[str], stats: ValueDataStats) -> torch.Tensor:
    """``normalise_state`` undone: a predicted ``future_state`` in [-1, 1] -> raw proprioception units."""
    low, width = _state_range(tasks, stats)
    return low + (state.float().clamp(-1.0, 1.0) + 1.0) / 2.0 * width
