"""Is a value version good enough to label advantages with? Judged on episodes it never trained on.

The held-out episodes are the value learner's held-out split of labelled demonstrations and rollouts, plus every
labelled evaluation episode (never trained on). On each, the predicted values (model range) are compared with the
value target the model was trained towards (``valuemodel.targets``: the normalised return-to-go, failures
penalised), which a real arm has too, since it needs only the outcome and the time.

Rank and linear correlations are blind to scale: a curve that rises by 0.02 over an episode scores the same VOC
and Pearson as one that rises by 1.5. The floor therefore checks, on the held-out *successes*,

- ``shape_r2``: 1 - MSE / variance of prediction against target once each episode's mean is taken out of both,
  pooled over held-out frames: does the value follow the episode's course at the right scale? A flat curve
  scores 0, a curve at a twentieth of the scale about 0.1. Each episode's own mean is left out because it is
  set by the outcome, which no value model can know from the first frames: a perfect estimate of the expected
  return still misses a realised failure's offset, so the pooled ``r2`` (reported beside it) is capped by how
  uncertain the outcomes are, not by the model;
- ``spread``: the median over episodes of std(prediction) / std(target) (a flat curve scores about 0).

Only successes, because a failure's target is a ramp set by the clock: a failure that times out gains return
steadily until the limit while the arm goes nowhere, which no value reading frames can follow (a model that knows
the arm is stuck rightly predicts a flat, low value). Judged on every episode, the floor failed good versions as
soon as the rollouts held failures and kept stale ones (RESULTS.md, label agreement); on successes progress and
the clock agree, and a flat curve still scores about 0. The pooled ``r2`` and the other scores are over all
held-out episodes.

VOC on held-out successes and Pearson against ground-truth progress (simulation only) are reported beside them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from replay import TRAINING_PURPOSES, EpisodeFilter, FrameIndex, Outcome, ReplayStore
from valuemodel.metrics import pearson, voc
from valuemodel.targets import episode_value_targets


@dataclass
class ValueFloorConfig:
    """The held-out quality a value version needs before its values label advantages."""

    # Off: every version labels, whatever its quality.
    enabled: bool = True
    min_shape_r2: float = 0.2
    min_spread: float = 0.3
    # Fewer held-out successes than this: the version is judged unmeasurable, and fails.
    min_episodes: int = 3
    # Evaluation episodes judged beside the held-out split: the newest round's, in seed order (each costs a
    # labelling pass; 0 takes them all).
    eval_episodes: int = 12


@dataclass
class ValueQuality:
    episodes: int
    successes: int
    shape_r2: float
    r2: float
    spread: float
    voc: float
    pearson_progress: float
    passed: bool
    reason: str

    def as_dict(self) -> dict[str, float | int | bool | str]:
        return asdict(self)


def held_out_episodes(
    store: ReplayStore, holdout_fraction: float, eval_episodes: int = 0, up_to_round: int | None = None
) -> list:
    """Commit records of labelled episodes no value model trained on: the held-out split of demonstrations and
    rollouts, and ``eval_episodes`` evaluation episodes of the newest evaluated round (0: every one); with
    ``up_to_round``, of rounds 0 to it only (a round's check, while the arms may record the next round)."""
    labelled = (Outcome.SUCCESS, Outcome.FAILURE)
    rounds = None if up_to_round is None else tuple(range(up_to_round + 1))

    def records(episode_filter: EpisodeFilter) -> list:
        index = FrameIndex(store, episode_filter)
        index.refresh()
        return sorted(index.records.values(), key=lambda r: r.meta.episode_id)

    held_out = records(
        EpisodeFilter(
            outcomes=labelled,
            purposes=TRAINING_PURPOSES,
            split="holdout",
            holdout_fraction=holdout_fraction,
            rounds=rounds,
        )
    )
    evaluations = records(EpisodeFilter(outcomes=labelled, purposes=("eval",), rounds=rounds))
    if evaluations:
        newest = max(r.meta.round for r in evaluations)
        evaluations = sorted(
            (r for r in evaluations if r.meta.round == newest), key=lambda r: r.meta.seed or 0
        )
        held_out += evaluations[:eval_episodes] if eval_episodes > 0 else evaluations
    return held_out


def assess_values(
    store: ReplayStore,
    value_key: str,
    records: list,
    max_episode_length: dict[str, int],
    failure_penalty: float | None,
    floor: ValueFloorConfig,
) -> ValueQuality:
    """Score the ``value/<value_key>`` column on ``records`` and check it against ``floor``."""
    predictions, targets, centred_errors, within, spreads, vocs, pearsons = [], [], [], [], [], [], []
    for record in records:
        meta = record.meta
        values = store.read_derived("value", value_key, meta.episode_id)
        if values is None or meta.length < 3 or meta.task not in max_episode_length:
            continue
        limit = max(max_episode_length[meta.task], meta.length)
        target = episode_value_targets(meta.length, meta.outcome is Outcome.SUCCESS, limit, failure_penalty)
        values = np.asarray(values, dtype=np.float64)
        target = target.astype(np.float64)
        predictions.append(values)
        targets.append(target)
        if meta.outcome is Outcome.SUCCESS:
            centred_errors.append((values - values.mean()) - (target - target.mean()))
            within.append(target - target.mean())
            if target.std() > 1e-6:
                spreads.append(values.std() / target.std())
            vocs.append(voc(values))
        if meta.has_ground_truth:
            progress = store.read_episode(meta.episode_id, columns=["progress"])["progress"]
            pearsons.append(pearson(values, progress))
    episodes, successes = len(predictions), len(centred_errors)
    r2 = shape_r2 = float("nan")
    if episodes:
        pred, target = np.concatenate(predictions), np.concatenate(targets)
        variance = float(np.var(target))
        r2 = 1.0 - float(np.mean((pred - target) ** 2)) / variance if variance > 1e-12 else float("nan")
    if successes:
        within_variance = float(np.mean(np.concatenate(within) ** 2))
        error = float(np.mean(np.concatenate(centred_errors) ** 2))
        shape_r2 = 1.0 - error / within_variance if within_variance > 1e-12 else float("nan")
    spread = float(np.median(spreads)) if spreads else float("nan")
    failures = []
    if successes < floor.min_episodes:
        failures.append(f"only {successes} held-out successes (need {floor.min_episodes})")
    if not shape_r2 >= floor.min_shape_r2:
        failures.append(f"shape R2 {shape_r2:.2f} < {floor.min_shape_r2}")
    if not spread >= floor.min_spread:
        failures.append(f"spread {spread:.2f} < {floor.min_spread}")
    passed = not floor.enabled or not failures
    return ValueQuality(
        episodes=episodes,
        successes=successes,
        shape_r2=shape_r2,
        r2=r2,
        spread=spread,
        voc=float(np.nanmean(vocs)) if vocs else float("nan"),
        pearson_progress=float(np.nanmean(pearsons)) if pearsons else float("nan"),
        passed=passed,
        reason="; ".join(failures) if failures else "ok",
    )
