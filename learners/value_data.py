"""The value learner's data side: replay frames -> ``ValueBatch`` in model units, and cached VAE latents.

Per training run the learner fixes ``ValueDataStats`` from the commit records of the episodes it trains on:

- state range per task (min/max over every recorded step), used to map proprioception onto [-1, 1];
- L_max per task (the longest episode seen, or the task's time limit when the config gives one), which with the
  episode's length and outcome fixes every frame's RECAP value target (``valuemodel.targets``);
- the replay task names in the order of ``ValueModelConfig.tasks`` (the model's task ids).

They are saved beside each published checkpoint as its norm stats, so inference (labelling, evaluation, actors)
normalises exactly as training did. Only labelled episodes carry targets; the learner's ``EpisodeFilter`` keeps
successes and failures only.

WVM trains on windows of ``prefix + 2 * chunk`` frames ``frame_stride`` steps apart ending ``chunk`` strides after
the sampled frame (``WindowDataset``); indices are clamped into the episode, as at its edges a robot holds still.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from replay import CameraSchema, EpisodeRecord, FrameKey, Outcome, ReplayStore, StoreSchema
from replay.dataset import FrameWindowDataset
from valuemodel.config import ValueModelConfig
from valuemodel.interface import ValueBatch
from valuemodel.norm_stats import ValueDataStats, normalise_state
from valuemodel.synthetic import SYNTHETIC_CAMERAS, SYNTHETIC_STATE_DIM, make_episode
from valuemodel.targets import episode_value_targets

OUTCOME_SUCCESS, OUTCOME_FAILURE = 1, 0


def compute_value_stats(
    records: Sequence[EpisodeRecord],
    task_names: Sequence[str],
    *,
    horizon: int,
    frame_stride: int = 1,
    failure_penalty: float | None = None,
    time_limits: dict[str, int] | None = None,
) -> ValueDataStats:
    """State range and L_max per task from commit records (no episode data is read)."""
    if not records:
        raise ValueError("no labelled episodes to train a value model on")
    state_min: dict[str, np.ndarray] = {}
    state_max: dict[str, np.ndarray] = {}
    longest: dict[str, int] = {}
    for record in records:
        task, stats = record.meta.task, record.stats["state"]
        low, high = np.asarray(stats.minimum), np.asarray(stats.maximum)
        state_min[task] = np.minimum(state_min[task], low) if task in state_min else low
        state_max[task] = np.maximum(state_max[task], high) if task in state_max else high
        longest[task] = max(longest.get(task, 0), record.meta.length)
    unknown = sorted(set(longest) - set(task_names))
    if unknown:
        raise KeyError(
            f"episodes of tasks {unknown} are not in the value model's task list {list(task_names)}"
        )
    limits = dict(time_limits or {})
    return ValueDataStats(
        task_names=list(task_names),
        state_min={t: v.tolist() for t, v in state_min.items()},
        state_max={t: v.tolist() for t, v in state_max.items()},
        # A time limit can only raise L_max: an episode longer than L_max has no valid target.
        max_episode_length={t: max(n, int(limits.get(t, 0))) for t, n in longest.items()},
        failure_penalty=failure_penalty,
        horizon=horizon,
        frame_stride=frame_stride,
    )


@functools.lru_cache(maxsize=4096)
def _episode_targets(length: int, success: bool, max_length: int, penalty: float | None) -> np.ndarray:
    return episode_value_targets(length, success, max_length, penalty)


def value_targets(
    steps: np.ndarray, lengths: np.ndarray, outcomes: np.ndarray, tasks: Sequence[str], stats: ValueDataStats
) -> np.ndarray:
    """(N,) RECAP value targets in the model range for frames given by step, episode length, outcome code, task."""
    out = np.empty(len(steps), dtype=np.float32)
    for i, (step, length, outcome, task) in enumerate(zip(steps, lengths, outcomes, tasks, strict=True)):
        # valuemodel.targets raises UnlabelledEpisodeError for None: an unlabelled frame must never get a target.
        success = {OUTCOME_SUCCESS: True, OUTCOME_FAILURE: False}.get(int(outcome))
        table = _episode_targets(int(length), success, stats.max_episode_length[task], stats.failure_penalty)
        out[i] = table[int(step)]
    return out


def images_chw(batch: dict[str, Any], cameras: Sequence[str]) -> dict[str, torch.Tensor]:
    """Replay's uint8 (..., H, W, 3) camera images -> (..., 3, H, W), still uint8 (the model scales them)."""
    return {c: batch[f"images.{c}"].movedim(-1, -3).contiguous() for c in cameras}


class LatentCache:
    """VAE latents per (episode, step, camera), LRU-bounded: the frozen VAE is the learner's CPU bottleneck.

    Valid for one VAE only; the learner keys a cache to the VAE weights' fingerprint and drops it on change.
    """

    def __init__(self, max_frames: int) -> None:
        self.max_frames = max_frames
        self.entries: OrderedDict[tuple[str, int, str], torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self.entries)

    def latents(
        self,
        keys: Sequence[FrameKey],
        cameras: Sequence[str],
        load_images: Callable[[list[FrameKey]], dict[str, torch.Tensor]],
        encode: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        """camera -> (N, C, h, w) latents of the frames ``keys``; only frames not cached are loaded (camera ->
        (M, 3, H, W) from ``load_images``) and encoded."""
        frames = [(e, int(s)) for e, s in keys]
        # Windows repeat frames (clamped at episode edges, overlapping chunks): encode each distinct frame once.
        missing = list(dict.fromkeys(f for f in frames if (*f, cameras[0]) not in self.entries))
        self.hits += len(frames) - len(missing)
        self.misses += len(missing)
        fresh: dict[tuple[str, int, str], torch.Tensor] = {}
        if missing:
            encoded = encode(load_images(missing))
            for c in cameras:
                for row, frame in enumerate(missing):
                    fresh[(*frame, c)] = encoded[c][row].detach().cpu()
        out = {}
        # Read every hit before storing the misses, so that storing cannot evict a frame this batch needs.
        for c in cameras:
            rows = []
            for frame in frames:
                key = (*frame, c)
                if key not in fresh:
                    self.entries.move_to_end(key)
                rows.append(fresh[key] if key in fresh else self.entries[key])
            out[c] = torch.stack(rows)
        for key, latent in fresh.items():
            self._put(key, latent)
        return out

    def add(self, episode_id: str, step: int, camera: str, latent: torch.Tensor) -> None:
        """Store a latent computed elsewhere with the same VAE (the backbone's pretraining)."""
        self._put((episode_id, int(step), camera), latent)

    def _put(self, key: tuple[str, int, str], latent: torch.Tensor) -> None:
        if self.max_frames <= 0:
            return
        self.entries[key] = latent
        while len(self.entries) > self.max_frames:
            self.entries.popitem(last=False)


def window_offsets(config: ValueModelConfig, frame_stride: int) -> np.ndarray:
    """Step offsets of a WVM window's frames relative to its present (last current) frame."""
    present = config.prefix_frames + config.chunk - 1
    return (np.arange(config.window_frames) - present) * frame_stride


class WindowDataset(Dataset):
    """WVM windows over a ``FrameWindowDataset``: each sampled key becomes ``window_frames`` frame keys.

    Batches keep the frame dataset's columns with a time axis after the batch axis, plus ``key_episode`` and
    ``key_step`` of the sampled (present) frame. Works in DataLoader workers like the frame dataset.
    """

    def __init__(self, frames: FrameWindowDataset, offsets: np.ndarray) -> None:
        self.frames = frames
        self.offsets = np.asarray(offsets, dtype=np.int64)

    def __getitem__(self, key: FrameKey) -> dict[str, Any]:
        batch = self.__getitems__([key])
        return {k: v[0] for k, v in batch.items()}

    def __getitems__(self, keys: Sequence[FrameKey]) -> dict[str, Any]:
        cache = self.frames._episodes()
        window = len(self.offsets)
        expanded: list[FrameKey] = []
        for episode_id, step in keys:
            last = cache.record(episode_id).meta.length - 1
            expanded.extend((episode_id, int(s)) for s in np.clip(step + self.offsets, 0, last))
        flat = self.frames.__getitems__(expanded)
        out: dict[str, Any] = {}
        for name, column in flat.items():
            if isinstance(column, torch.Tensor):
                out[name] = column.unflatten(0, (len(keys), window))
            else:
                out[name] = [column[i * window : (i + 1) * window] for i in range(len(keys))]
        out["key_episode"] = [k[0] for k in keys]
        out["key_step"] = torch.tensor([int(k[1]) for k in keys])
        out["frame_keys"] = expanded
        return out


class ValueBatchAdapter:
    """A replay batch (frames or WVM windows) -> ``ValueBatch`` in model units.

    With a latent cache, batches come from a dataset without cameras (``cameras=()``) and the adapter reads the
    images of cache misses itself through ``image_reader``, so a cached frame is never decoded from the store.
    """

    def __init__(
        self,
        config: ValueModelConfig,
        stats: ValueDataStats,
        *,
        encode: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
        cache: LatentCache | None = None,
        image_reader: FrameWindowDataset | None = None,
    ) -> None:
        if cache is not None and (encode is None or image_reader is None):
            raise ValueError("a latent cache needs an encoder and an image reader")
        self.config = config
        self.stats = stats
        self.encode = encode
        self.cache = cache
        self.image_reader = image_reader

    def task_ids(self, tasks: Sequence[str]) -> torch.Tensor:
        return torch.tensor([self.stats.task_id(t) for t in tasks], dtype=torch.long)

    def read_images(self, keys: list[FrameKey]) -> dict[str, torch.Tensor]:
        assert self.image_reader is not None
        return images_chw(self.image_reader.__getitems__(keys), self.config.cameras)

    def _frames(
        self, keys: Sequence[FrameKey], batch: dict[str, Any], flatten: bool
    ) -> tuple[dict[str, torch.Tensor], bool]:
        """camera -> (N, ...) latents (True) or uint8 images (False) of the frames ``keys``."""
        if self.cache is not None and self.encode is not None:
            return self.cache.latents(keys, self.config.cameras, self.read_images, self.encode), True
        images = images_chw(batch, self.config.cameras)
        return ({c: v.flatten(0, 1) for c, v in images.items()} if flatten else images), False

    def __call__(self, batch: dict[str, Any], with_targets: bool = True) -> ValueBatch:
        if self.config.kind == "wvm":
            return self._windows(batch, with_targets)
        tasks = list(batch["task"])
        keys = list(zip(batch["episode_id"], batch["step"].tolist(), strict=True))
        frames, are_latents = self._frames(keys, batch, flatten=False)
        value_batch = ValueBatch(
            task_id=self.task_ids(tasks),
            images=None if are_latents else frames,
            image_latents=frames if are_latents else None,
            state=normalise_state(batch["state"], tasks, self.stats),
        )
        if with_targets:
            value_batch.future_state = normalise_state(batch["future_state"], tasks, self.stats)
            value_batch.value_target = torch.from_numpy(
                value_targets(
                    batch["step"].numpy(),
                    batch["episode_length"].numpy(),
                    batch["outcome"].numpy(),
                    tasks,
                    self.stats,
                )  # fmt: skip
            )
        return value_batch

    def _windows(self, batch: dict[str, Any], with_targets: bool) -> ValueBatch:
        size, window = batch["step"].shape
        tasks = [t[0] for t in batch["task"]]
        frames, are_latents = self._frames(batch["frame_keys"], batch, flatten=True)
        video = {c: v.unflatten(0, (size, window)) for c, v in frames.items()}
        value_batch = ValueBatch(
            task_id=self.task_ids(tasks),
            video=None if are_latents else video,
            video_latents=video if are_latents else None,
        )
        if with_targets:
            flat_tasks = [t for t in tasks for _ in range(window)]
            targets = value_targets(batch["step"].flatten().numpy(), batch["episode_length"].flatten().numpy(),
                                    batch["outcome"].flatten().numpy(), flat_tasks, self.stats)  # fmt: skip
            value_batch.value_window = torch.from_numpy(targets).reshape(size, window)
        return value_batch


def merge_window_values(
    chunks: np.ndarray, present_steps: np.ndarray, chunk_offsets: np.ndarray, length: int
) -> np.ndarray:
    """Average WVM's overlapping value chunks into one per-step curve.

    chunks (N, h): chunk i holds values of steps present_steps[i] + chunk_offsets (clamped into the episode).
    Steps no chunk covers (between strided frames never happens: every step is some window's present) stay NaN.
    """
    total = np.zeros(length)
    count = np.zeros(length)
    for chunk, present in zip(chunks, present_steps, strict=True):
        steps = np.clip(present + chunk_offsets, 0, length - 1)
        np.add.at(total, steps, chunk)
        np.add.at(count, steps, 1.0)
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1.0), np.nan).astype(np.float32)


def predict_episode_values(
    model: Any, adapter: ValueBatchAdapter, dataset: Dataset, episode_id: str, length: int, batch_size: int,
    frame_stride: int = 1, step_stride: int = 1,
) -> np.ndarray:  # fmt: skip
    """(length,) predicted values (model range) of every step of one episode, in batches of ``batch_size``.

    With ``step_stride`` > 1 (ViVa, static) the model runs on every ``step_stride``-th step and the last one, and
    the steps between are interpolated linearly: on a CPU the VAE encoding of every frame dominates labelling,
    and at 10 Hz the value moves little in 0.3 s.

    ``dataset`` yields frames (ViVa, static) or, for WVM, windows of prefix + chunk frames (``inference_offsets``);
    WVM's overlapping chunks are averaged per step (``predict_wvm_episode``).
    """
    config: ValueModelConfig = model.config
    if config.kind == "wvm":
        return predict_wvm_episode(model, adapter, dataset, episode_id, length, batch_size, frame_stride)
    steps = np.unique(np.append(np.arange(0, length, max(1, step_stride)), length - 1))
    parts = []
    for start in range(0, len(steps), batch_size):
        keys = [(episode_id, int(step)) for step in steps[start : start + batch_size]]
        batch = adapter(dataset.__getitems__(keys), with_targets=False).to(model.device)
        parts.append(model.predict(batch).value.float().cpu().numpy())
    values = np.concatenate(parts).astype(np.float32)
    if len(steps) == length:
        return values
    return np.interp(np.arange(length), steps, values).astype(np.float32)


def predict_wvm_episode(
    model: Any, adapter: ValueBatchAdapter, dataset: Dataset, episode_id: str, length: int, batch_size: int,
    frame_stride: int,
) -> np.ndarray:  # fmt: skip
    """WVM's sliding-window inference over one episode, with the prefix values taken from earlier windows.

    The prefix values are the value stream's condition (in training the true values half the time), so a window
    must get the values already predicted for its prefix frames, not noise: with noise the model copies it. The
    latest prefix frame lies ``chunk * frame_stride`` steps before a window's present, so windows are run in
    blocks of at most that many consecutive presents; every prefix step of a block was the present of a window in
    an earlier block. The first block has no predictions yet: its windows get the model's random prefix, which
    training prepared it for (prefix randomisation).
    """
    config: ValueModelConfig = model.config
    offsets = window_offsets(config, frame_stride)
    p, h = config.prefix_frames, config.chunk
    prefix_offsets, chunk_offsets = offsets[:p], offsets[p : p + h]
    block = max(1, min(batch_size, h * frame_stride)) if p > 0 else batch_size
    total, count = np.zeros(length), np.zeros(length)
    for start in range(0, length, block):
        presents = np.arange(start, min(start + block, length))
        batch = adapter(dataset.__getitems__([(episode_id, int(s)) for s in presents]), with_targets=False)
        if p > 0 and start > 0:
            prefix_steps = np.clip(presents[:, None] + prefix_offsets[None, :], 0, length - 1)
            prefix = total[prefix_steps] / np.maximum(count[prefix_steps], 1.0)
            window = np.zeros((len(presents), p + h), dtype=np.float32)
            window[:, :p] = prefix
            batch.value_window = torch.from_numpy(window)
        chunks = model.predict(batch.to(model.device)).value_chunk.float().cpu().numpy()
        steps = np.clip(presents[:, None] + chunk_offsets[None, :], 0, length - 1)
        np.add.at(total, steps, chunks)
        np.add.at(count, steps, 1.0)
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1.0), np.nan).astype(np.float32)


def latent_encoder(model: Any) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None:
    """camera -> (N, 3, H, W) images -> camera -> (N, C, h, w) latents with the model's VAE (None: no VAE)."""
    if model.config.kind == "viva":
        return model.encode_images
    if model.config.kind == "wvm":

        def encode(images: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            video = model.encode_video({c: x[:, None] for c, x in images.items()})
            return {c: v[:, 0] for c, v in video.items()}

        return encode
    return None


def batch_adapter(
    store: ReplayStore, model: Any, stats: ValueDataStats, cache: LatentCache | None
) -> ValueBatchAdapter:
    """The adapter for ``model``; with a cache (models with a VAE only) it reads images of cache misses itself."""
    encode = latent_encoder(model)
    if cache is None or encode is None:
        return ValueBatchAdapter(model.config, stats)
    reader = FrameWindowDataset(store, horizon=0, cameras=list(model.config.cameras))
    return ValueBatchAdapter(model.config, stats, encode=encode, cache=cache, image_reader=reader)


def frame_dataset(
    store: ReplayStore, model_config: ValueModelConfig, stats: ValueDataStats, *, cached: bool, training: bool
) -> Dataset:
    """Frames (ViVa, static) or WVM windows; without images when the adapter serves latents from its cache."""
    cameras = () if cached else list(model_config.cameras)
    frames = FrameWindowDataset(store, horizon=stats.horizon, cameras=cameras)
    if model_config.kind != "wvm":
        return frames
    offsets = window_offsets(model_config, stats.frame_stride)
    return WindowDataset(
        frames, offsets if training else offsets[: model_config.prefix_frames + model_config.chunk]
    )


def episode_predictor(
    store: ReplayStore, model: Any, stats: ValueDataStats, *, batch_size: int, cache: LatentCache | None,
    step_stride: int = 1,
) -> Callable[[str], np.ndarray]:  # fmt: skip
    """episode id -> (T,) predicted values (model range) of every step, for labelling and evaluation."""
    adapter = batch_adapter(store, model, stats, cache)
    dataset = frame_dataset(store, model.config, stats, cached=adapter.cache is not None, training=False)

    def predict(episode_id: str) -> np.ndarray:
        length = store.record(episode_id).meta.length
        return predict_episode_values(
            model, adapter, dataset, episode_id, length, batch_size, stats.frame_stride, step_stride
        )

    return predict


def synthetic_store_schema(
    cameras: Sequence[str] = SYNTHETIC_CAMERAS, image_size: int = 64, state_dim: int = SYNTHETIC_STATE_DIM
) -> StoreSchema:
    """The store layout of ``valuemodel.synthetic`` episodes (tests and benchmarks without the simulator)."""
    return StoreSchema(
        cameras=tuple(CameraSchema(c, image_size, image_size) for c in cameras),
        state_names=tuple(f"s{i}" for i in range(state_dim)),
        action_names=("a0",),
        control_hz=10.0,
    )


def write_synthetic_episode(
    store: ReplayStore, episode: Any, *, task: str, round_index: int = 0, tags: Sequence[str] = (),
    purpose: str = "rollout",
) -> str:  # fmt: skip
    """Commit one ``valuemodel.synthetic.SyntheticEpisode`` (images (T, 3, H, W)) with its outcome, ground truth
    and ``tags``; returns the episode id."""
    writer = store.episode_writer(
        robot_id="synthetic", round=round_index, policy_version="synthetic", task=task, purpose=purpose
    )
    with writer:
        for t in range(len(episode)):
            writer.add_step(
                {c: np.ascontiguousarray(v[t].transpose(1, 2, 0)) for c, v in episode.images.items()},
                episode.state[t],
                np.zeros(1, np.float32),
                float(t) / 10.0,
                progress=float(episode.progress[t]),
                stage=int(episode.stage[t]),
            )
        writer.commit(
            Outcome.SUCCESS if episode.success else Outcome.FAILURE, labelled_by="synthetic", tags=tags
        )
    return writer.episode_id


def write_synthetic_store(
    url: str,
    kinds: Sequence[str],
    *,
    seed: int = 0,
    task: str = "synthetic",
    image_size: int = 32,
    length_range: tuple[int, int] = (30, 40),
) -> tuple[ReplayStore, dict[str, str]]:
    """A new store of ``valuemodel.synthetic`` episodes of the given kinds; returns it and episode id -> kind."""
    rng = np.random.default_rng(seed)
    store = ReplayStore.create(url, synthetic_store_schema(image_size=image_size))
    kind_of = {}
    for kind in kinds:
        episode = make_episode(rng, kind, image_size=image_size, length_range=length_range)
        kind_of[write_synthetic_episode(store, episode, task=task)] = kind
    return store, kind_of
