"""Value targets from episode outcomes (pure numpy): RECAP-style normalised steps-to-go with a failure penalty.

Sign convention everywhere in vivarl: higher is better.

For an episode of T steps (t = 0 .. T-1) of a task whose longest allowed episode is L_max steps, with outcome
``success`` and failure penalty C_fail (in steps), the reward is (as in pi*0.6 / RECAP)

    r_t = -1                       for t < T-1
    r_{T-1} = 0 if success, else -C_fail

so the undiscounted return-to-go is G_t = sum_{k>=t} r_k = -(T-1-t) - C_fail * [failure]. It is normalised per
task into (-1, 0] by

    V_t = G_t / (L_max + C_fail)        (-> 0 at the last step of a success; T <= L_max keeps V_t > -1)

and mapped into the model's value range [-1, 1] by the affine map

    y_t = 2 V_t + 1                      (V = (y - 1) / 2 maps back).

So a success ends at y = 1, every step still to go costs 2 / (L_max + C_fail), and a failure costs as much as
C_fail more steps. The default C_fail = L_max makes failing at the very end as bad as having a whole maximal
episode still ahead. Unlabelled episodes (outcome unknown) have no target: ``episode_value_targets`` raises and
``labelled_episodes`` filters them out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class UnlabelledEpisodeError(ValueError):
    """An episode without a success/failure label was used as a value target."""


def failure_penalty_steps(max_episode_length: int, failure_penalty: float | None) -> float:
    """C_fail in steps; ``None`` means the default C_fail = L_max."""
    penalty = float(max_episode_length) if failure_penalty is None else float(failure_penalty)
    if penalty < 0:
        raise ValueError(f"failure_penalty must be >= 0, got {penalty}")
    return penalty


def normalised_returns(
    num_steps: int, success: bool | None, max_episode_length: int, failure_penalty: float | None = None
) -> np.ndarray:
    """(T,) V_t in (-1, 0]: the normalised return-to-go of every step of one episode (formula in module doc)."""
    if success is None:
        raise UnlabelledEpisodeError(
            "episode has no success/failure label; unlabelled episodes cannot be value targets "
            "(filter them with labelled_episodes)"
        )
    if num_steps < 1:
        raise ValueError(f"an episode needs at least one step, got {num_steps}")
    if num_steps > max_episode_length:
        raise ValueError(f"episode has {num_steps} steps, more than max_episode_length {max_episode_length}")
    c_fail = failure_penalty_steps(max_episode_length, failure_penalty)
    steps_to_go = np.arange(num_steps - 1, -1, -1, dtype=np.float64)
    returns = -(steps_to_go + (0.0 if success else c_fail))
    return (returns / (max_episode_length + c_fail)).astype(np.float32)


def to_model_range(normalised: np.ndarray | float) -> np.ndarray:
    """V in [-1, 0] -> y = 2 V + 1 in [-1, 1]."""
    return (2.0 * np.asarray(normalised, dtype=np.float32) + 1.0).astype(np.float32)


def from_model_range(model_value: np.ndarray | float) -> np.ndarray:
    """y in [-1, 1] -> V = (y - 1) / 2 in [-1, 0]."""
    return ((np.asarray(model_value, dtype=np.float32) - 1.0) / 2.0).astype(np.float32)


def episode_value_targets(
    num_steps: int, success: bool | None, max_episode_length: int, failure_penalty: float | None = None
) -> np.ndarray:
    """(T,) value targets of one episode in the model range [-1, 1]; raises on an unlabelled episode."""
    return to_model_range(normalised_returns(num_steps, success, max_episode_length, failure_penalty))


def labelled_episodes(outcomes: Sequence[bool | None]) -> np.ndarray:
    """Indices of the episodes whose outcome is known (success or failure), for building value datasets."""
    return np.array([i for i, outcome in enumerate(outcomes) if outcome is not None], dtype=np.int64)


def max_length_per_task(task_ids: Sequence[int], lengths: Sequence[int]) -> dict[int, int]:
    """L_max per task from the episodes at hand (use the task's time limit instead when it is known)."""
    result: dict[int, int] = {}
    for task, length in zip(task_ids, lengths, strict=True):
        result[int(task)] = max(result.get(int(task), 0), int(length))
    return result


def progress_targets(num_steps: int) -> np.ndarray:
    """(T,) WVM-paper progress t / (T - 1) in [0, 1] (for comparisons; vivarl trains on the RECAP target)."""
    if num_steps < 2:
        return np.ones(num_steps, dtype=np.float32)
    return (np.arange(num_steps, dtype=np.float32) / (num_steps - 1)).astype(np.float32)
