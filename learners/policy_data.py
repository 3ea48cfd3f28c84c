"""The policy learner's data side: which frames it trains on, with what weight and indicator, in model units.

Extraction methods (``EXTRACTIONS``) differ only here:

- ``bc``: every frame, weight 1, indicator always "dropped" (an unconditional policy).
- ``recap``: every frame, weight 1, the frame's advantage indicator, replaced by "dropped" with probability
  ``indicator_dropout`` (RECAP's 30%; it trains the unconditional model used by guidance).
- ``filtered_bc``: only frames whose Delta passes the filter (Delta >= 0, or the top fraction per task).
- ``awr``: every frame, weight min(exp(tau Delta / s_task), cap), s_task the per-task spread of Delta.

Delta for filtered BC and AWR is, by default, the same RECAP N-step advantage the indicators were cut from, so
the four methods see one signal and differ only in how they extract a policy from it; ``delta_source="wvm"``
uses the WVM paper's V(t+H-1) - V(t) from a value column instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from learners.advantage import awr_weights, filter_nonnegative, filter_top_fraction, wvm_delta
from policy.base import Normalizer, PolicyInputs, PolicyTargets, images_to_float, relative_to_state
from policy.conditioning import DROPPED, drop_indicators, indicator_tokens
from policy.config import PolicyConfig
from replay import EpisodeRecord, FrameIndex, FrameKey, ReplayStore
from replay.schema import MomentStats
from valuemodel.targets import from_model_range

EXTRACTIONS = ("recap", "bc", "filtered_bc", "awr")


class KeptFrameSampler:
    """Keys of the index's frames where ``keep`` is True, reshuffled every epoch from (seed, epoch)."""

    def __init__(self, index: FrameIndex, keep: np.ndarray | None = None, seed: int = 0) -> None:
        self.index = index
        self.positions = np.arange(len(index)) if keep is None else np.flatnonzero(keep)
        if len(self.positions) == 0:
            raise ValueError("no frames left to train on (empty store, filter or extraction selection)")
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.positions)

    def __iter__(self) -> Iterator[FrameKey]:
        order = np.random.default_rng((self.seed, self.epoch)).permutation(self.positions)
        self.epoch += 1
        for position in order:
            yield self.index.key(int(position))


def normalization_stats(records: list[EpisodeRecord]) -> dict[str, dict[str, np.ndarray]]:
    """State and action mean/std over the training episodes (merged from their commit records)."""
    out = {}
    for column in ("state", "action"):
        merged: MomentStats | None = None
        for record in records:
            merged = record.stats[column] if merged is None else merged.merge(record.stats[column])
        if merged is None:
            raise ValueError("no episodes to compute normalisation statistics from")
        out[column] = merged.normalization()
    return out


def chunk_action_stats(
    store: ReplayStore,
    records: list[EpisodeRecord],
    chunk_size: int,
    relative_dims: list[int],
    state_dims: list[int] | None = None,
) -> dict[str, np.ndarray]:
    """Mean/std (chunk_size, A) of the training targets per chunk step: a_{t+k}, minus state_t (at
    ``state_dims``, None: the same indices) on ``relative_dims``, over every frame of ``records`` (a chunk running
    past the episode's end repeats its last action, as the training windows do)."""
    state_dims = relative_dims if state_dims is None else state_dims
    total, total_sq, count = 0.0, 0.0, 0
    for record in records:
        columns = store.read_episode(record.meta.episode_id, ["state", "action"])
        state, action = columns["state"].astype(np.float64), columns["action"].astype(np.float64)
        length = len(action)
        window = np.minimum(np.arange(length)[:, None] + np.arange(chunk_size)[None, :], length - 1)
        targets = action[window]
        targets[..., relative_dims] -= state[:, None, state_dims]
        total = total + targets.sum(0)
        total_sq = total_sq + np.square(targets).sum(0)
        count += length
    if count == 0:
        raise ValueError("no episodes to compute action statistics from")
    mean = np.asarray(total) / count
    std = np.sqrt(np.maximum(np.asarray(total_sq) / count - np.square(mean), 0.0))
    return {"mean": mean.astype(np.float32), "std": np.maximum(std, 1e-6).astype(np.float32)}


def frame_deltas(
    store: ReplayStore,
    index: FrameIndex,
    *,
    source: str,
    labelling_run: str | None,
    value_key: str | None = None,
    wvm_horizon: int = 4,
    value_in_model_range: bool = True,
) -> np.ndarray:
    """Delta of every frame of ``index`` (aligned with its positions): the labelling run's advantage, or WVM's."""
    per_episode = []
    for episode_id in index.episode_ids:
        if source == "advantage":
            if labelling_run is None:
                raise ValueError("filtered BC and AWR on advantages need a labelling_run")
            column = store.read_derived("advantage", labelling_run, episode_id)
        elif source == "wvm":
            if value_key is None:
                raise ValueError("delta_source='wvm' needs a value_key")
            values = store.read_derived("value", value_key, episode_id)
            if values is not None and value_in_model_range:
                values = from_model_range(values)
            column = None if values is None else wvm_delta(values, wvm_horizon)
        else:
            raise ValueError(f"delta_source must be 'advantage' or 'wvm', got {source!r}")
        if column is None:
            raise KeyError(f"episode {episode_id} has no {source} column; filter with require_derived")
        per_episode.append(np.asarray(column, dtype=np.float32))
    if not per_episode:
        return np.zeros(0, np.float32)
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in per_episode])[:-1]])
    return np.concatenate(per_episode)[offsets[index.episode_of] + index.step_of]


def frame_tasks(index: FrameIndex) -> np.ndarray:
    tasks = np.array([index.records[i].meta.task for i in index.episode_ids], dtype=object)
    return tasks[index.episode_of]


def filtered_bc_keep(
    deltas: np.ndarray, tasks: np.ndarray, mode: str, fraction: float, seed: int = 0
) -> np.ndarray:
    """Frames kept by filtered BC: Delta >= 0 (``nonnegative``) or the top ``fraction`` per task."""
    if mode == "nonnegative":
        return filter_nonnegative(deltas)
    if mode != "top_fraction":
        raise ValueError(f"filter mode must be 'nonnegative' or 'top_fraction', got {mode!r}")
    keep = np.zeros(len(deltas), dtype=bool)
    for task in np.unique(tasks):
        members = np.flatnonzero(tasks == task)
        keep[members] = filter_top_fraction(deltas[members], fraction, seed)
    return keep


def delta_scales(deltas: np.ndarray, tasks: np.ndarray) -> dict[str, float]:
    """Per-task standard deviation of Delta (1 where it is zero), so one AWR temperature fits every task."""
    return {str(t): float(deltas[tasks == t].std()) or 1.0 for t in np.unique(tasks)}


class BatchConverter:
    """A replay batch (``FrameWindowDataset``) -> normalised ``PolicyInputs`` and ``PolicyTargets``."""

    def __init__(
        self,
        policy_config: PolicyConfig,
        normalizer: Normalizer,
        extraction: str,
        *,
        awr_scales: dict[str, float] | None = None,
        awr_temperature: float = 1.0,
        awr_cap: float = 2.0,
        seed: int = 0,
    ) -> None:
        if extraction not in EXTRACTIONS:
            raise ValueError(f"extraction must be one of {list(EXTRACTIONS)}, got {extraction!r}")
        if extraction == "awr" and awr_scales is None:
            raise ValueError("AWR needs per-task Delta scales")
        self.config = policy_config
        self.normalizer = normalizer
        self.extraction = extraction
        self.awr_scales = awr_scales or {}
        self.awr_temperature = awr_temperature
        self.awr_cap = awr_cap
        self.generator = torch.Generator().manual_seed(seed)

    def indicators(self, batch: dict[str, Any]) -> torch.Tensor:
        size = batch["state"].shape[0]
        if self.extraction != "recap" or not self.config.advantage_conditioned:
            return torch.full((size,), DROPPED, dtype=torch.long)
        tokens = indicator_tokens(batch["indicator"])
        return drop_indicators(tokens, self.config.indicator_dropout, self.generator)

    def weights(self, batch: dict[str, Any]) -> torch.Tensor:
        size = batch["state"].shape[0]
        if self.extraction != "awr":
            return torch.ones(size)
        scales = np.array([self.awr_scales[t] for t in batch["task"]], dtype=np.float32)
        delta = batch["advantage"].numpy() / scales
        return torch.from_numpy(awr_weights(delta, self.awr_temperature, self.awr_cap))

    def __call__(self, batch: dict[str, Any]) -> tuple[PolicyInputs, PolicyTargets]:
        images = {
            cam: images_to_float(batch[f"images.{cam}"], self.config.image_size, self.config.image_fit)
            for cam in self.config.cameras
        }
        inputs = PolicyInputs(
            images=images,
            state=self.normalizer.state(batch["state"]),
            indicator=self.indicators(batch),
            task=list(batch["task"]),
        )
        actions = batch["action"]
        actions = relative_to_state(
            actions,
            batch["state"],
            self.config.relative_action_dims or [],
            state_dims=self.config.state_dims_of_relative,
        )
        targets = PolicyTargets(
            actions=self.normalizer.action(actions),
            valid=batch["action_valid"],
            weight=self.weights(batch),
        )
        return inputs, targets
