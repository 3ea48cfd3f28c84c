"""Advantages and policy-extraction labels (pure numpy): RECAP's N-step advantage, binary indicators, and the
filtered-BC / AWR selectors that the WVM paper compares against.

Reward and value share one convention with ``valuemodel.targets`` (higher is better). For an episode of T steps
of a task whose longest episode is L_max, with failure penalty C_fail (steps), the normalised reward is

    r_t = -1 / Z                 for t < T-1,     Z = L_max + C_fail
    r_{T-1} = 0 on success, -C_fail / Z on failure

so that the value target V_t = sum_{k>=t} r_k is exactly ``valuemodel.targets.normalised_returns``. The N-step
advantage of step t (RECAP, pi*0.6) is

    A_t = sum_{k=t}^{min(t+N, T)-1} r_k  +  V(o_{t+N}) [t+N < T]  -  V(o_t)

Episode ends: when t+N >= T the reward sum stops at the last step T-1 and the bootstrap is 0, because the
episode is over (success or failure is final; there is no state o_T to value), so A_t becomes the Monte-Carlo
return-to-go minus V(o_t). With V equal to the episode's own return-to-go every advantage is 0; advantages carry
information only when V is a value *model* that averages over many episodes (a learned one, or the
ground-truth nearest-neighbour estimate in ``learners.policy_labels``).

Time-outs: a failure that ran to the time limit was cut off, not finished, and nothing in an observation says
how close the limit is. Scored as terminal, the last N frames of an arm that stood still until the limit would
look better than the same frames earlier in the stall (fewer -1 steps left before the end, while V(o) averages
over the whole stall), so the last N frames of every stall would be labelled positive. For such an episode
(``timed_out=True``) the last frame is the bootstrap state instead (Pardo et al., "Time Limits in Reinforcement
Learning", 2018): A_t = sum_{k=t}^{e-1} r_k + V(o_e) - V(o_t) with e = min(t+N, T-1), so a stall scores -1 per
step all the way to the end. The failure still counts: it is in V(o_e), which the value target penalises.

Indicator semantics: per group (task, and demonstrations vs. each round's rollouts), the top ``positive_fraction``
of frames by advantage are positive, exactly round(fraction * n) of them (ties at the boundary are broken by a
seeded random draw, so flat stretches of equal advantage are not split by position). Intervention (human
correction) steps are always positive and do not count towards the fraction: the fraction is taken over the
autonomous frames of the group. The returned threshold is the lowest advantage labelled positive.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from valuemodel.targets import UnlabelledEpisodeError, failure_penalty_steps

DEFAULT_HORIZON = 50
DEMO_POSITIVE_FRACTION = 0.3
ROLLOUT_POSITIVE_FRACTION = 0.4


def step_rewards(
    num_steps: int, success: bool | None, max_episode_length: int, failure_penalty: float | None = None
) -> np.ndarray:
    """(T,) normalised rewards r_t of one episode (see module doc); their reversed cumsum is the value target."""
    if success is None:
        raise UnlabelledEpisodeError("an episode without a success/failure label has no rewards")
    if not 1 <= num_steps <= max_episode_length:
        raise ValueError(
            f"num_steps must be in 1..max_episode_length ({max_episode_length}), got {num_steps}"
        )
    c_fail = failure_penalty_steps(max_episode_length, failure_penalty)
    rewards = np.full(num_steps, -1.0, dtype=np.float64)
    rewards[-1] = 0.0 if success else -c_fail
    return (rewards / (max_episode_length + c_fail)).astype(np.float32)


def nstep_advantages(
    values: np.ndarray, rewards: np.ndarray, horizon: int = DEFAULT_HORIZON, truncated: bool = False
) -> np.ndarray:
    """(T,) A_t = sum_{k=t}^{min(t+N,T)-1} r_k + V_{t+N} [t+N < T] - V_t for one episode (terminal bootstrap 0);
    with ``truncated`` the last frame is bootstrapped: A_t = sum_{k=t}^{e-1} r_k + V_e - V_t, e = min(t+N, T-1)."""
    values = np.asarray(values, dtype=np.float64)
    rewards = np.asarray(rewards, dtype=np.float64)
    if values.shape != rewards.shape or values.ndim != 1:
        raise ValueError(
            f"values and rewards must be equal-length vectors, got {values.shape}, {rewards.shape}"
        )
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    num_steps = len(values)
    cumulative = np.concatenate([[0.0], np.cumsum(rewards)])
    t = np.arange(num_steps)
    if truncated:
        end = np.minimum(t + horizon, num_steps - 1)
        bootstrap = values[end]
    else:
        end = np.minimum(t + horizon, num_steps)
        bootstrap = np.where(t + horizon < num_steps, values[np.minimum(t + horizon, num_steps - 1)], 0.0)
    return (cumulative[end] - cumulative[t] + bootstrap - values).astype(np.float32)


def recap_advantages(
    values: np.ndarray,
    success: bool | None,
    max_episode_length: int,
    horizon: int = DEFAULT_HORIZON,
    failure_penalty: float | None = None,
    timed_out: bool = False,
) -> np.ndarray:
    """(T,) RECAP advantages of one episode from its values V_t in normalised units (-1, 0]; ``timed_out`` marks
    a failure cut off by the time limit (see module doc)."""
    if timed_out and success:
        raise ValueError("an episode that succeeded did not time out")
    rewards = step_rewards(len(values), success, max_episode_length, failure_penalty)
    return nstep_advantages(values, rewards, horizon, truncated=timed_out)


def top_fraction_mask(scores: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean mask of exactly round(fraction * n) highest scores; ties at the boundary broken at random."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    scores = np.asarray(scores, dtype=np.float64)
    keep = int(round(fraction * len(scores)))
    tie_break = np.random.default_rng(seed).random(len(scores))
    order = np.lexsort((tie_break, -scores))
    mask = np.zeros(len(scores), dtype=bool)
    mask[order[:keep]] = True
    return mask


def binarize_advantages(
    advantages: np.ndarray,
    groups: Sequence[Hashable] | np.ndarray,
    positive_fraction: float | Mapping[Hashable, float],
    interventions: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, dict[Hashable, float]]:
    """Indicators (bool, per frame) and the threshold of each group (lowest positive advantage; inf if none).

    ``groups`` names each frame's group (for example ``(task, "demo")`` or ``(task, round)``);
    ``positive_fraction`` is one fraction for all groups or one per group. Interventions are forced positive.
    """
    advantages = np.asarray(advantages, dtype=np.float64)
    group_keys = list(groups)
    if len(group_keys) != len(advantages):
        raise ValueError(f"need one group per frame: {len(group_keys)} groups for {len(advantages)} frames")
    forced = np.zeros(len(advantages), bool) if interventions is None else np.asarray(interventions, bool)
    indicators = forced.copy()
    thresholds: dict[Hashable, float] = {}
    members: dict[Hashable, list[int]] = {}
    for position, key in enumerate(group_keys):
        members.setdefault(key, []).append(position)
    for number, (key, positions_list) in enumerate(members.items()):
        positions = np.asarray(positions_list)
        autonomous = positions[~forced[positions]]
        fraction = positive_fraction[key] if isinstance(positive_fraction, Mapping) else positive_fraction
        chosen = autonomous[top_fraction_mask(advantages[autonomous], float(fraction), seed + number)]
        indicators[chosen] = True
        thresholds[key] = float(advantages[chosen].min()) if len(chosen) else float("inf")
    return indicators, thresholds


# --- the WVM paper's extraction baselines -------------------------------------------------------------------


def wvm_delta(values: np.ndarray, horizon: int) -> np.ndarray:
    """(T,) Delta_t = V(t+H-1) - V(t) within one episode (clamped to its last step), as in the WVM paper."""
    values = np.asarray(values, dtype=np.float64)
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    ahead = np.minimum(np.arange(len(values)) + horizon - 1, len(values) - 1)
    return (values[ahead] - values).astype(np.float32)


def filter_nonnegative(delta: np.ndarray) -> np.ndarray:
    """Binary filtered BC: keep the frames with Delta >= 0."""
    return np.asarray(delta) >= 0.0


def filter_top_fraction(delta: np.ndarray, fraction: float = 0.7, seed: int = 0) -> np.ndarray:
    """Top-k% filtered BC (the WVM paper keeps the top 70%)."""
    return top_fraction_mask(delta, fraction, seed)


def awr_weights(delta: np.ndarray, temperature: float, cap: float = 2.0) -> np.ndarray:
    """Advantage-weighted regression weights min(exp(tau * Delta), cap); the WVM paper caps at 2."""
    if cap <= 0:
        raise ValueError(f"cap must be positive, got {cap}")
    exponent = np.minimum(temperature * np.asarray(delta, dtype=np.float64), np.log(cap))
    return np.exp(exponent).astype(np.float32)


def standardize_per_group(delta: np.ndarray, groups: Sequence[Hashable] | np.ndarray) -> np.ndarray:
    """Delta divided by its per-group standard deviation (not centred), so one AWR temperature fits every task
    whatever the value normaliser; a group with zero spread is left unscaled."""
    delta = np.asarray(delta, dtype=np.float64)
    out = delta.copy()
    keys = list(groups)
    for key in set(keys):
        positions = np.asarray([i for i, k in enumerate(keys) if k == key])
        spread = delta[positions].std()
        if spread > 0:
            out[positions] = delta[positions] / spread
    return out.astype(np.float32)
