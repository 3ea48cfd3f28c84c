"""A labelling run: RECAP advantages and binary indicators for every labelled episode of a replay store,
written as derived columns ``advantage/<run>`` and ``indicator/<run>`` that the policy learner reads.

Values come from a derived ``value/<value_key>`` column (a value model's predictions, in the model range
[-1, 1] by default, mapped back to V in (-1, 0]), or, when no value model is wired, from the simulator's ground
truth: ``neighbour_values`` sets V(o_t) to the mean value target of the k frames of *other* episodes nearest to
frame t in (progress, proprioception). That estimate is a value *model* averaged over many episodes, so a step
that hesitates, retries or drops scores below one that makes progress at the usual pace. Two choices matter:
proprioception resolves the stretches where progress stays flat while the arm moves (a progress-only table
gives every frame of such a stretch one value), and leaving the frame's own episode out keeps an episode's own
pauses from setting the value they are compared with. It needs ground-truth progress and is meant for
simulation and tests.

Groups for the positive fraction: (task, "demo") for episodes of ``demo_rounds``, (task, round) for rollouts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from learners.advantage import (
    DEFAULT_HORIZON,
    DEMO_POSITIVE_FRACTION,
    ROLLOUT_POSITIVE_FRACTION,
    binarize_advantages,
    recap_advantages,
)
from replay import EpisodeFilter, EpisodeRecord, FrameIndex, Outcome, ReplayStore
from replay.schema import spans_to_mask
from valuemodel.targets import from_model_range, normalised_returns

LEARNED_VALUE_HORIZONS = ("episode", "horizon")


@dataclass
class LabellingConfig:
    """One labelling run over a store."""

    run: str
    """Derived-column key the advantages and indicators are written under (recorded in policy checkpoints)."""
    value_key: str | None = None
    """Derived ``value`` column to read; None estimates values from ground-truth progress (simulation)."""
    value_in_model_range: bool = True
    """The value column holds y in [-1, 1] (value-model output) rather than V in (-1, 0]."""
    horizon: int = DEFAULT_HORIZON
    """N of the N-step advantage, in control steps."""
    horizon_s: float | None = None
    """N in seconds instead (the round driver converts it at the arms' control rate, so a 30 Hz arm looks as far
    ahead as the 10 Hz simulator); None: ``horizon`` steps."""
    learned_value_horizon: str = "episode"
    """The horizon when the values come from a learned value model (``value_key`` set): ``episode`` looks to the
    end of the episode (A_t = G_t - V_t, RECAP's N = T), ``horizon`` uses ``horizon``/``horizon_s`` as values from
    ground truth do. A learned value's one-second differences are mostly its own noise: on a loop's rollouts its
    labels agreed with ground-truth values' labels at the same horizon at chance for N up to 10 s and only over
    the whole episode beyond it (``scripts/label_agreement.py``, RESULTS.md)."""
    outcome_only: bool = False
    """Label without values: every frame of a successful episode and every correction positive, the rest negative
    (filtered BC by outcome). The round driver's fallback when no value version passes the quality floor."""
    demo_positive_fraction: float = DEMO_POSITIVE_FRACTION
    """Fraction of demonstration frames labelled positive, per task."""
    rollout_positive_fraction: float = ROLLOUT_POSITIVE_FRACTION
    """Fraction of each round's rollout frames labelled positive, per task."""
    demo_rounds: tuple[int, ...] = (0,)
    """Rounds whose episodes are demonstrations."""
    max_episode_length: dict[str, int] = field(default_factory=dict)
    """L_max per task at least (its time limit; a longer labelled episode raises it); tasks not listed use their
    longest labelled episode. The round driver sets the value learner's ``time_limit``, so that the rewards and the
    value model's normalised values share one scale and only a failure at the limit counts as timed out."""
    failure_penalty: float | None = None
    """C_fail in steps; None = L_max, as in valuemodel.targets."""
    neighbours: int = 16
    """k of the ground-truth value estimate (frames of other episodes averaged per frame)."""
    progress_weight: float = 10.0
    """Weight of progress against standardised proprioception in that estimate's distance."""
    seed: int = 0
    """Seed of the tie-breaking at the positive-fraction threshold."""

    def __post_init__(self) -> None:
        if self.learned_value_horizon not in LEARNED_VALUE_HORIZONS:
            raise ValueError(
                f"labelling.learned_value_horizon must be one of {list(LEARNED_VALUE_HORIZONS)}, got "
                f"{self.learned_value_horizon!r}"
            )


def is_success(record: EpisodeRecord) -> bool:
    return record.meta.outcome is Outcome.SUCCESS


def outcome_indicator(record: EpisodeRecord) -> np.ndarray:
    """Labels by outcome alone: every frame of a success and every correction positive."""
    length = record.meta.length
    return np.full(length, is_success(record)) | spans_to_mask(record.intervention_spans, length)


def looks_to_episode_end(config: LabellingConfig) -> bool:
    """Whether advantages look to the end of the episode (a learned value with ``learned_value_horizon=episode``)."""
    return config.value_key is not None and config.learned_value_horizon == "episode"


def effective_horizon(config: LabellingConfig, max_episode_length: int) -> int:
    """N in steps for a task whose episodes last at most ``max_episode_length`` steps."""
    return max_episode_length if looks_to_episode_end(config) else config.horizon


@dataclass
class LabellingReport:
    run: str
    episodes: int
    frames: int
    positive_fraction: float
    thresholds: dict[str, float]
    # Episodes left out because nobody gave their outcome (they get labels once labelled and labelled again).
    unlabelled: int = 0


def neighbour_values(
    progress: list[np.ndarray],
    states: list[np.ndarray],
    targets: list[np.ndarray],
    neighbours: int,
    progress_weight: float = 10.0,
) -> list[np.ndarray]:
    """Per episode, V at each frame = mean value target of the ``neighbours`` frames of other episodes nearest to
    it in (progress_weight * progress, standardised proprioception). Needs at least two episodes."""
    from scipy.spatial import cKDTree

    if len(progress) < 2:
        raise ValueError("the ground-truth value estimate needs at least two labelled episodes of a task")
    all_progress = np.concatenate(progress)
    if not np.isfinite(all_progress).all():
        raise ValueError("ground-truth values need recorded progress on every frame (simulator data)")
    all_states = np.concatenate(states).astype(np.float64)
    mean, std = all_states.mean(0), all_states.std(0) + 1e-6
    features = [
        np.column_stack([progress_weight * p, (x - mean) / std])
        for p, x in zip(progress, states, strict=True)
    ]
    owner = np.concatenate([np.full(len(f), i) for i, f in enumerate(features)])
    flat_targets = np.concatenate(targets)
    tree = cKDTree(np.concatenate(features))
    longest = max(len(f) for f in features)
    out = []
    for i, episode_features in enumerate(features):
        # Asking for k + the longest episode guarantees k neighbours are left once the episode's own are removed.
        wanted = min(neighbours + longest, len(owner))
        _, index = tree.query(episode_features, k=wanted)
        index = index.reshape(len(episode_features), wanted)
        values = np.empty(len(episode_features), dtype=np.float32)
        for row, candidates in enumerate(index):
            others = candidates[owner[candidates] != i][:neighbours]
            values[row] = flat_targets[others].mean()
        out.append(values)
    return out


def label_store(
    store: ReplayStore,
    config: LabellingConfig,
    episode_filter: EpisodeFilter | None = None,
    log: Callable[[str], None] | None = None,
) -> LabellingReport:
    """Compute and write advantages and indicators for every labelled episode that passes ``episode_filter``."""
    index = FrameIndex(store, episode_filter)
    index.refresh()
    records = [r for r in index.records.values() if r.meta.outcome is not Outcome.UNLABELLED]
    unlabelled = len(index.records) - len(records)
    if not records:
        raise ValueError(
            f"no labelled episodes to label in {store!r} with {episode_filter}"
            + (
                f": all {unlabelled} are unlabelled. Give their outcomes on the arms' operator consoles (listed "
                "under 'Unlabelled episodes') and run the same command again"
                if unlabelled
                else ""
            )
        )
    if unlabelled and log is not None:
        log(f"labelling leaves out {unlabelled} unlabelled episodes (no outcome given)")
    lengths = task_lengths(records, config)
    if config.outcome_only:
        return replace(_label_by_outcome(store, records, config, log), unlabelled=unlabelled)
    advantages, indicators, thresholds = advantages_and_indicators(store, records, config, lengths)
    flat_advantages = np.concatenate(advantages)
    start = 0
    for record, episode_advantages in zip(records, advantages, strict=True):
        stop = start + record.meta.length
        store.write_derived("advantage", config.run, record.meta.episode_id, episode_advantages)
        store.write_derived("indicator", config.run, record.meta.episode_id, indicators[start:stop])
        start = stop
    report = LabellingReport(
        run=config.run,
        episodes=len(records),
        frames=len(flat_advantages),
        positive_fraction=float(indicators.mean()),
        thresholds={f"{task}/{source}": value for (task, source), value in thresholds.items()},
        unlabelled=unlabelled,
    )
    if log is not None:
        log(
            f"labelling run {config.run}: {report.episodes} episodes, {report.frames} frames, "
            f"{report.positive_fraction:.1%} positive, thresholds {report.thresholds}"
        )
    return report


def task_lengths(records: list[EpisodeRecord], config: LabellingConfig) -> dict[str, int]:
    """L_max per task: its longest labelled episode, raised to ``config.max_episode_length`` where given."""
    lengths: dict[str, int] = {}
    for r in records:
        lengths[r.meta.task] = max(lengths.get(r.meta.task, 0), r.meta.length)
    for task, limit in config.max_episode_length.items():
        lengths[task] = max(lengths.get(task, 0), int(limit))
    return lengths


def advantages_and_indicators(
    store: ReplayStore, records: list[EpisodeRecord], config: LabellingConfig, lengths: dict[str, int]
) -> tuple[list[np.ndarray], np.ndarray, dict[tuple[str, str], float]]:
    """RECAP advantages per episode, the indicators of all their frames (in ``records`` order) and each group's
    threshold, with L_max per task from ``lengths``; nothing is written."""
    values = _episode_values(store, records, config, lengths, is_success)
    advantages, groups, interventions = [], [], []
    for record, episode_values in zip(records, values, strict=True):
        meta = record.meta
        advantages.append(
            recap_advantages(
                episode_values,
                is_success(record),
                lengths[meta.task],
                effective_horizon(config, lengths[meta.task]),
                config.failure_penalty,
                # A failure as long as the task's time limit (L_max) was cut off by it.
                timed_out=not is_success(record) and meta.length >= lengths[meta.task],
            )
        )
        source = "demo" if meta.round in config.demo_rounds else f"round{meta.round}"
        groups.extend([(meta.task, source)] * meta.length)
        interventions.append(spans_to_mask(record.intervention_spans, meta.length))
    fractions = {
        key: config.demo_positive_fraction if key[1] == "demo" else config.rollout_positive_fraction
        for key in set(groups)
    }
    indicators, thresholds = binarize_advantages(
        np.concatenate(advantages), groups, fractions, np.concatenate(interventions), config.seed
    )
    return advantages, indicators, thresholds


def _label_by_outcome(
    store: ReplayStore,
    records: list[EpisodeRecord],
    config: LabellingConfig,
    log: Callable[[str], None] | None,
) -> LabellingReport:
    frames = positives = 0
    for record in records:
        length = record.meta.length
        indicator = outcome_indicator(record)
        advantage = np.where(indicator, 1.0, -1.0).astype(np.float32)
        store.write_derived("advantage", config.run, record.meta.episode_id, advantage)
        store.write_derived("indicator", config.run, record.meta.episode_id, indicator)
        frames, positives = frames + length, positives + int(indicator.sum())
    report = LabellingReport(config.run, len(records), frames, positives / max(frames, 1), {})
    if log is not None:
        log(
            f"labelling run {config.run}: by outcome, {report.episodes} episodes, {report.positive_fraction:.1%} positive"
        )
    return report


def _episode_values(
    store: ReplayStore,
    records: list[EpisodeRecord],
    config: LabellingConfig,
    lengths: dict[str, int],
    success: Callable[[EpisodeRecord], bool],
) -> list[np.ndarray]:
    if config.value_key is not None:
        out = []
        for r in records:
            column = store.read_derived("value", config.value_key, r.meta.episode_id)
            if column is None:
                raise KeyError(f"episode {r.meta.episode_id} has no value column '{config.value_key}'")
            out.append(from_model_range(column) if config.value_in_model_range else column.astype(np.float32))
        return out
    # One progress-to-value table per task: tasks differ in length, so their values at equal progress differ.
    out: list[np.ndarray | None] = [None] * len(records)
    for task in {r.meta.task for r in records}:
        members = [i for i, r in enumerate(records) if r.meta.task == task]
        columns = [store.read_episode(records[i].meta.episode_id, ["progress", "state"]) for i in members]
        targets = [
            normalised_returns(
                records[i].meta.length, success(records[i]), lengths[task], config.failure_penalty
            )
            for i in members
        ]
        estimate = neighbour_values(
            [c["progress"] for c in columns],
            [c["state"] for c in columns],
            targets,
            config.neighbours,
            config.progress_weight,
        )
        for i, values in zip(members, estimate, strict=True):
            out[i] = values
    return [v for v in out if v is not None]
