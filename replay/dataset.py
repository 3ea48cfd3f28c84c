"""The PyTorch side: a Dataset of frame windows over committed episodes, and a DataLoader factory.

Keys come from ``replay.sampler.FrameSampler``; a batch of keys is read in one ``__getitems__`` call, grouped
by episode, so each image chunk is decoded once per batch at most, and the chunks a batch lacks are read together
by ``replay.chunks.read_chunks``. Each process (main or DataLoader worker)
keeps a bounded LRU of decoded image chunks and the small per-step columns of every episode it has touched,
and checks each against the crc32 recorded at commit the first time it is decoded, so corrupted bytes raise
``CorruptEpisodeError`` naming the episode instead of reaching a learner.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from replay.chunks import read_chunks, read_columns
from replay.sampler import FrameKey, FrameSampler
from replay.schema import LOWDIM_CHUNK_STEPS, LOWDIM_COLUMNS, CorruptEpisodeError, EpisodeRecord, Outcome
from replay.store import ReplayStore, ensure_store
from replay.verify import check_chunk

OUTCOME_CODES = {Outcome.SUCCESS: 1, Outcome.FAILURE: 0, Outcome.UNLABELLED: -1}
T = TypeVar("T")


def _unreadable(episode_id: str, array: str, chunk: int | None, exc: BaseException) -> CorruptEpisodeError:
    # Undecodable committed bytes are corruption, named as such.
    return CorruptEpisodeError(episode_id, array, chunk, f"unreadable: {type(exc).__name__}: {exc}")


def _read(episode_id: str, array: str, chunk: int | None, read: Callable[[], np.ndarray]) -> np.ndarray:
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - see _unreadable
        raise _unreadable(episode_id, array, chunk, exc) from exc


class _EpisodeCache:
    """Per-process caches: open arrays, per-step columns (small, kept) and decoded image chunks (LRU)."""

    def __init__(self, store: ReplayStore, cache_bytes: int, verify: bool) -> None:
        self.store = store
        self.cache_bytes = cache_bytes
        self.verify = verify
        self.records: dict[str, EpisodeRecord] = {}
        self.arrays: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.columns: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, np.ndarray]] = {}
        self.chunks: OrderedDict[tuple[str, str, int], np.ndarray] = OrderedDict()
        self.chunk_bytes = 0

    def record(self, episode_id: str) -> EpisodeRecord:
        if episode_id not in self.records:
            self.records[episode_id] = self.store.record(episode_id)
        return self.records[episode_id]

    def _arrays(self, episode_id: str) -> dict[str, Any]:
        if episode_id in self.arrays:
            self.arrays.move_to_end(episode_id)
        else:
            try:
                self.arrays[episode_id] = self.store.open_episode(episode_id)
            except Exception as exc:  # noqa: BLE001 - a committed episode that cannot be opened is damaged
                raise CorruptEpisodeError(episode_id, "metadata", None, f"cannot open: {exc}") from exc
            if len(self.arrays) > 512:
                self.arrays.popitem(last=False)
        return self.arrays[episode_id]

    def lowdim(self, episode_id: str, derived: tuple[tuple[str, str], ...]) -> dict[str, np.ndarray]:
        cache_key = (episode_id, derived)
        if cache_key not in self.columns:
            record = self.record(episode_id)
            arrays = self._arrays(episode_id)
            cols = {}
            names = list(LOWDIM_COLUMNS)
            for name, values in zip(names, read_columns([arrays[n] for n in names]), strict=True):
                if isinstance(values, BaseException):
                    raise _unreadable(episode_id, name, None, values) from values
                if self.verify:
                    for c in range(0, len(values), LOWDIM_CHUNK_STEPS):
                        check_chunk(record, name, c // LOWDIM_CHUNK_STEPS, values[c : c + LOWDIM_CHUNK_STEPS])
                cols[name] = values
            for kind, key in derived:
                column = self.store.read_derived(kind, key, episode_id)
                if column is None:
                    column = np.full(record.meta.length, np.nan if kind != "indicator" else False)
                cols[kind] = column
            self.columns[cache_key] = cols
        return self.columns[cache_key]

    def prefetch(self, wanted: dict[str, np.ndarray], cameras: Sequence[str]) -> None:
        """Decode every image chunk a batch needs and the cache lacks in one ``read_chunks`` call (plain file
        reads on a local store, one concurrent gather on object storage)."""
        chunk_steps = self.store.schema.image_chunk_steps
        missing = []
        for episode_id, steps in wanted.items():
            arrays = self._arrays(episode_id)
            for camera in cameras:
                for chunk in np.unique(steps // chunk_steps).tolist():
                    if (episode_id, camera, chunk) not in self.chunks:
                        missing.append((episode_id, camera, chunk, arrays[f"images/{camera}"]))
        blocks = read_chunks([(array, chunk) for _, _, chunk, array in missing])
        for (episode_id, camera, chunk, _), block in zip(missing, blocks, strict=True):
            if isinstance(block, BaseException):
                continue  # frames() reads it again through zarr and reports the damage with the episode's name
            if self.verify:
                check_chunk(self.record(episode_id), f"images/{camera}", chunk, block)
            self._remember((episode_id, camera, chunk), block)

    def frames(self, episode_id: str, camera: str, steps: np.ndarray) -> np.ndarray:
        name = f"images/{camera}"
        chunk_steps = self.store.schema.image_chunk_steps
        chunk_ids = steps // chunk_steps
        out = None
        for chunk in np.unique(chunk_ids):
            key = (episode_id, camera, int(chunk))
            block = self.chunks.get(key)
            if block is None:
                array = self._arrays(episode_id)[name]
                block = _read(
                    episode_id,
                    name,
                    int(chunk),
                    lambda a=array, c=chunk: a[c * chunk_steps : (c + 1) * chunk_steps],
                )
                if self.verify:
                    check_chunk(self.record(episode_id), name, int(chunk), block)
                self._remember(key, block)
            else:
                self.chunks.move_to_end(key)
            picked = chunk_ids == chunk
            if out is None:
                out = np.empty((len(steps), *block.shape[1:]), dtype=block.dtype)
            out[picked] = block[steps[picked] - chunk * chunk_steps]
        assert out is not None
        return out

    def _remember(self, key: tuple[str, str, int], block: np.ndarray) -> None:
        if block.nbytes > self.cache_bytes:
            return
        self.chunks[key] = block
        self.chunk_bytes += block.nbytes
        while self.chunk_bytes > self.cache_bytes:
            _, evicted = self.chunks.popitem(last=False)
            self.chunk_bytes -= evicted.nbytes


class FrameWindowDataset(Dataset):
    """Frame windows for learners: images and state at t, state at t+``horizon``, actions t..t+H-1, targets.

    Items are keyed by ``(episode_id, step)`` as yielded by ``FrameSampler``. Batches (from ``__getitems__``):

    - ``images.<camera>``: uint8 (B, H, W, 3), as recorded (convert to float on the GPU, 4x less IPC).
    - ``state``, ``future_state`` float32 (B, D); ``future_valid`` bool: t+horizon is inside the episode
      (otherwise ``future_state`` repeats the last step).
    - ``action`` float32 (B, action_horizon, A) and ``action_valid`` bool (B, action_horizon), padded likewise.
    - ``timestamp``, ``progress``, ``future_progress``, ``stage``, ``intervention``, ``step``,
      ``episode_length``, ``round``, ``outcome`` (1 success, 0 failure, -1 unlabelled); ``episode_id`` and
      ``task`` as lists of str.
    - ``value`` / ``advantage`` / ``indicator`` when ``value_key`` / ``advantage_key`` / ``indicator_key``
      name a derived column (NaN, or False for indicators, where an episode lacks it; filter with
      ``EpisodeFilter.require_derived`` to sample only labelled episodes).
    """

    def __init__(
        self,
        store: ReplayStore | str,
        *,
        horizon: int = 50,
        action_horizon: int = 1,
        cameras: Sequence[str] | None = None,
        value_key: str | None = None,
        advantage_key: str | None = None,
        indicator_key: str | None = None,
        cache_bytes: int = 1 << 30,
        verify_checksums: bool = True,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.store = ensure_store(store, storage_options)
        if horizon < 0 or action_horizon < 1:
            raise ValueError(f"horizon must be >= 0 and action_horizon >= 1, got {horizon}, {action_horizon}")
        self.horizon = horizon
        self.action_horizon = action_horizon
        self.cameras = tuple(cameras) if cameras is not None else self.store.schema.camera_names
        for cam in self.cameras:
            self.store.schema.camera(cam)
        keys = {"value": value_key, "advantage": advantage_key, "indicator": indicator_key}
        self.derived = tuple((kind, key) for kind, key in keys.items() if key is not None)
        self.cache_bytes = cache_bytes
        self.verify_checksums = verify_checksums
        self._cache: _EpisodeCache | None = None
        self._cache_pid = -1

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = None
        return state

    def _episodes(self) -> _EpisodeCache:
        # Workers get a pickled copy without the cache; a forked copy is detected by pid and starts afresh.
        if self._cache is None or self._cache_pid != os.getpid():
            self._cache = _EpisodeCache(self.store, self.cache_bytes, self.verify_checksums)
            self._cache_pid = os.getpid()
        return self._cache

    def __getitem__(self, key: FrameKey) -> dict[str, Any]:
        batch = self.__getitems__([key])
        return {k: v[0] for k, v in batch.items()}

    def __getitems__(self, keys: Sequence[FrameKey]) -> dict[str, Any]:
        cache = self._episodes()
        n = len(keys)
        schema = self.store.schema
        out: dict[str, np.ndarray] = {
            "state": np.empty((n, schema.state_dim), np.float32),
            "future_state": np.empty((n, schema.state_dim), np.float32),
            "future_valid": np.empty(n, bool),
            "action": np.empty((n, self.action_horizon, schema.action_dim), np.float32),
            "action_valid": np.empty((n, self.action_horizon), bool),
            "timestamp": np.empty(n, np.float64),
            "progress": np.empty(n, np.float32),
            "future_progress": np.empty(n, np.float32),
            "stage": np.empty(n, np.int64),
            "intervention": np.empty(n, bool),
            "step": np.empty(n, np.int64),
            "episode_length": np.empty(n, np.int64),
            "round": np.empty(n, np.int64),
            "outcome": np.empty(n, np.int64),
        }
        for cam in self.cameras:
            out[f"images.{cam}"] = np.empty((n, *schema.camera(cam).shape), np.uint8)
        for kind, _ in self.derived:
            out[kind] = np.empty(n, bool if kind == "indicator" else np.float32)
        episode_ids = [k[0] for k in keys]
        tasks = [""] * n
        groups: dict[str, list[int]] = {}
        for position, episode_id in enumerate(episode_ids):
            groups.setdefault(episode_id, []).append(position)
        cache.prefetch({e: np.asarray([keys[p][1] for p in ps]) for e, ps in groups.items()}, self.cameras)
        for episode_id, positions_list in groups.items():
            positions = np.asarray(positions_list)
            steps = np.asarray([keys[p][1] for p in positions_list], dtype=np.int64)
            record = cache.record(episode_id)
            length = record.meta.length
            if steps.min() < 0 or steps.max() >= length:
                raise IndexError(f"episode {episode_id} has {length} steps; asked for steps {steps.tolist()}")
            cols = cache.lowdim(episode_id, self.derived)
            future = np.minimum(steps + self.horizon, length - 1)
            window = steps[:, None] + np.arange(self.action_horizon)[None, :]
            out["state"][positions] = cols["state"][steps]
            out["future_state"][positions] = cols["state"][future]
            out["future_valid"][positions] = steps + self.horizon < length
            out["action"][positions] = cols["action"][np.minimum(window, length - 1)]
            out["action_valid"][positions] = window < length
            out["timestamp"][positions] = cols["timestamp"][steps]
            out["progress"][positions] = cols["progress"][steps]
            out["future_progress"][positions] = cols["progress"][future]
            out["stage"][positions] = cols["stage"][steps]
            out["intervention"][positions] = cols["intervention"][steps]
            out["step"][positions] = steps
            out["episode_length"][positions] = length
            out["round"][positions] = record.meta.round
            out["outcome"][positions] = OUTCOME_CODES[record.meta.outcome]
            for kind, _ in self.derived:
                out[kind][positions] = cols[kind][steps]
            for cam in self.cameras:
                out[f"images.{cam}"][positions] = cache.frames(episode_id, cam, steps)
            for p in positions_list:
                tasks[p] = record.meta.task
        batch: dict[str, Any] = {k: torch.from_numpy(v) for k, v in out.items()}
        batch["episode_id"] = episode_ids
        batch["task"] = tasks
        return batch

    def normalization_stats(
        self, records: Sequence[EpisodeRecord] | None = None
    ) -> dict[str, dict[str, Any]]:
        """Per-task {"state"|"action": {"mean", "std", "min", "max"}} as float32 tensors, from commit records."""
        stats = self.store.task_stats(records)
        return {
            task: {col: {k: torch.from_numpy(v) for k, v in s.items()} for col, s in cols.items()}
            for task, cols in stats.items()
        }


def collate_frames(batch: Any) -> Any:
    """Batches from ``__getitems__`` arrive collated; single items (plain ``dataset[key]``) are stacked."""
    if isinstance(batch, dict):
        return batch
    return default_collate(batch)


def make_loader(
    dataset: FrameWindowDataset,
    sampler: FrameSampler,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    persistent_workers: bool | None = None,
    **loader_options: Any,
) -> DataLoader:
    """A DataLoader wired for batched reads. Persistent workers keep their decoded-chunk caches across epochs."""
    if persistent_workers is None:
        persistent_workers = num_workers > 0
    return DataLoader(
        dataset,
        sampler=sampler,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_frames,
        persistent_workers=persistent_workers,
        **loader_options,
    )


class _Raised:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


class BackgroundBatches(Generic[T]):
    """Iterate ``batches`` in a daemon thread, up to ``depth`` items ahead of the consumer.

    Reading in the training process (no DataLoader workers) otherwise serialises the first, cold pass's chunk
    decoding with the optimisation step; zarr's decompression and torch's kernels both release the GIL, so a
    thread overlaps them without a worker process's second cache and pickling. The thread also shares the
    dataset's chunk cache. An exception in the producer is raised by the consumer's next ``next``; ``close``
    (or leaving a ``with`` block) stops the producer.
    """

    def __init__(self, batches: Iterable[T], depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(iter(batches),), daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, batches: Iterator[T]) -> None:
        try:
            for item in batches:
                if not self._put(item):
                    return
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which re-raises it
            self._put(_Raised(error))
            return
        self._put(_END)

    def __iter__(self) -> BackgroundBatches[T]:
        return self

    def __next__(self) -> T:
        if self._stop.is_set():
            raise StopIteration
        item = self._queue.get()
        if item is _END:
            self._stop.set()
            raise StopIteration
        if isinstance(item, _Raised):
            self._stop.set()
            raise item.error
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def __enter__(self) -> BackgroundBatches[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
