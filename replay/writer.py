"""EpisodeWriter: an actor's handle on the one episode it is recording.

Steps are buffered in memory and written in whole image chunks (``flush_steps`` frames) to the episode's own
zarr group in the staging area, by a background thread so a control loop never waits on compression. Nothing a
writer does touches another episode, so writers in many processes or nodes never share a zarr array (zarr's
concurrent resizes are unsafe). ``commit`` writes the final chunk, the checksums and the commit record; only then
can readers see the episode. A crash loses the unflushed tail and leaves a torn episode in staging.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
from zarr.core.sync import sync as zarr_sync

from replay.layout import WRITER_FILE, new_episode_id, writer_identity
from replay.schema import (
    EPISODE_PURPOSES,
    LOWDIM_CHUNK_STEPS,
    LOWDIM_COLUMNS,
    EpisodeMeta,
    EpisodeRecord,
    MomentStats,
    Outcome,
    ReplayError,
    ReplayWriteError,
    SchemaMismatchError,
    true_spans,
)

if TYPE_CHECKING:
    from replay.store import ReplayStore

HEARTBEAT_INTERVAL_S = 1.0


def chunk_crcs(values: np.ndarray, chunk_steps: int) -> list[int]:
    """crc32 of the raw bytes of each chunk of ``chunk_steps`` rows (the last may be short)."""
    values = np.ascontiguousarray(values)
    return [zlib.crc32(values[i : i + chunk_steps]) for i in range(0, len(values), chunk_steps)]


def _write_all(writes: list[tuple[zarr.Array, slice, np.ndarray]]) -> None:
    """Write several arrays in one round trip: zarr compresses their chunks concurrently (in threads) and an
    object store receives the PUTs in parallel, instead of one blocking call per array."""

    async def write() -> None:
        await asyncio.gather(*(arr._async_array.setitem(where, values) for arr, where, values in writes))

    zarr_sync(write())


def _resize_all(arrays: Iterable[zarr.Array], length: int) -> None:
    async def resize() -> None:
        # Nothing is ever written past the final length, so there are no chunks outside it to look for.
        await asyncio.gather(
            *(a._async_array.resize((length, *a.shape[1:]), delete_outside_chunks=False) for a in arrays)
        )

    zarr_sync(resize())


@dataclass
class _Segment:
    start: int
    images: dict[str, np.ndarray]
    lowdim: dict[str, np.ndarray]
    # Full segments (and the final one) are chunk-aligned, so their chunk checksums are final; an early flush
    # of a partial chunk is rewritten whole later and records none.
    final_chunks: bool


class EpisodeWriter:
    """Write one episode. Use as a context manager; leaving the block without ``commit`` aborts it.

    Not thread-safe: one actor thread calls ``add_step``; the writer's own thread does the I/O.
    """

    def __init__(
        self,
        store: ReplayStore,
        *,
        robot_id: str,
        round: int,
        policy_version: str,
        task: str,
        purpose: str = "rollout",
        seed: int | None = None,
        flush_steps: int | None = None,
        background: bool = True,
        expected_steps: int = 1024,
    ) -> None:
        self._store = store
        self.schema = store.schema
        chunk = self.schema.image_chunk_steps
        flush_steps = flush_steps or 4 * chunk
        if flush_steps % chunk:
            raise ValueError(f"flush_steps ({flush_steps}) must be a multiple of image_chunk_steps ({chunk})")
        self.flush_steps = flush_steps
        self.episode_id = new_episode_id()
        self._meta_fields: dict[str, Any] = {
            "seed": None if seed is None else int(seed),
            "robot_id": str(robot_id),
            "round": int(round),
            "policy_version": str(policy_version),
            "task": str(task),
            "purpose": str(purpose),
        }
        if purpose not in EPISODE_PURPOSES:
            raise ValueError(f"episode purpose must be one of {EPISODE_PURPOSES}, got {purpose!r}")
        self._start_time = time.time()
        self._parts = store.location.writing_parts(self.episode_id)
        self._capacity = max(flush_steps, -(-expected_steps // flush_steps) * flush_steps)
        self._state = "open"
        self._error: BaseException | None = None
        self._lowdim: dict[str, list[Any]] = {name: [] for name in LOWDIM_COLUMNS}
        self._pending = self._new_image_buffers()
        self._pending_start = 0
        self._image_crcs: dict[str, list[int]] = {c: [] for c in self.schema.camera_names}
        self._steps_flushed = 0
        self._last_heartbeat = 0.0
        try:
            # The heartbeat goes first so that every staging folder names its writer.
            self._heartbeat(force=True)
            self._arrays = store.create_episode_arrays(self._parts, self._capacity)
        except OSError as exc:
            # The folder may not even exist; verify reports whatever is there.
            with contextlib.suppress(OSError):
                self._heartbeat(force=True, aborted=f"could not start: {exc}")
            raise ReplayWriteError(f"could not start episode {self.episode_id}: {exc}") from exc
        self._queue: queue.Queue[_Segment | None] | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._queue = queue.Queue(maxsize=2)
            self._thread = threading.Thread(
                target=self._drain, name=f"replay-writer-{self.episode_id}", daemon=True
            )
            self._thread.start()

    # ---- recording ----------------------------------------------------------------------------------------

    @property
    def length(self) -> int:
        return len(self._lowdim["timestamp"])

    @property
    def steps_flushed(self) -> int:
        return self._steps_flushed

    def add_step(
        self,
        images: Mapping[str, np.ndarray],
        state: np.ndarray,
        action: np.ndarray,
        timestamp: float,
        *,
        intervention: bool = False,
        progress: float | None = None,
        stage: int | None = None,
    ) -> None:
        """Record one control step; ``progress``/``stage`` are ground truth only some sources have."""
        self._check_open()
        schema = self.schema
        slot = self.length - self._pending_start
        for cam in schema.cameras:
            img = images.get(cam.name)
            if img is None:
                raise SchemaMismatchError(f"step has no image for camera '{cam.name}' (has {sorted(images)})")
            if img.dtype != np.uint8 or img.shape != cam.shape:
                raise SchemaMismatchError(
                    f"camera '{cam.name}' image must be uint8 {cam.shape}, got {img.dtype} {tuple(img.shape)}"
                )
        state = np.asarray(state, dtype=np.float32)
        action = np.asarray(action, dtype=np.float32)
        if state.shape != (schema.state_dim,) or action.shape != (schema.action_dim,):
            raise SchemaMismatchError(
                f"state must have shape ({schema.state_dim},) and action ({schema.action_dim},); "
                f"got {state.shape} and {action.shape}"
            )
        for cam in schema.camera_names:
            self._pending[cam][slot] = images[cam]
        lowdim = self._lowdim
        lowdim["state"].append(state)
        lowdim["action"].append(action)
        lowdim["timestamp"].append(float(timestamp))
        lowdim["intervention"].append(bool(intervention))
        lowdim["progress"].append(np.nan if progress is None else float(progress))
        lowdim["stage"].append(-1 if stage is None else int(stage))
        if slot + 1 == self.flush_steps:
            self._submit(final_chunks=True)

    def add_observation(self, observation: Any, action: np.ndarray, *, intervention: bool = False) -> None:
        """Record a ``robot_io.spec.Observation`` (read by attribute) and the action sent after it."""
        info = getattr(observation, "info", None) or {}
        self.add_step(
            observation.images,
            observation.state,
            action,
            observation.timestamp,
            intervention=intervention,
            progress=info.get("progress"),
            stage=None if info.get("stage") is None else int(info["stage"]),
        )

    def flush(self) -> None:
        """Persist every step added so far (the partial chunk is rewritten whole once it fills)."""
        self._check_open()
        if self.length > self._pending_start:
            self._submit(final_chunks=False)
        self._wait_idle()
        try:
            self._heartbeat(force=True)
        except OSError as exc:
            self._error = exc
            self._raise_if_failed()

    def commit(
        self,
        outcome: Outcome | str = Outcome.UNLABELLED,
        labelled_by: str | None = None,
        tags: tuple[str, ...] = (),
    ) -> EpisodeRecord:
        """Write the tail, checksums and commit record; the episode becomes visible to readers atomically."""
        self._check_open()
        outcome = Outcome(outcome)
        if self.length == 0:
            raise ReplayError(f"episode {self.episode_id} has no steps; abort it instead of committing")
        if self.length > self._pending_start:
            self._submit(final_chunks=True)
        self._stop_thread()
        self._raise_if_failed()
        try:
            record = self._build_record(outcome, labelled_by, tuple(tags))
            self._store.location.commit(self.episode_id, record.to_json())
        except OSError as exc:
            self._state = "failed"
            raise ReplayWriteError(
                f"commit of episode {self.episode_id} failed; it stays uncommitted: {exc}"
            ) from exc
        self._state = "committed"
        return record

    def abort(self, reason: str = "aborted", *, discard: bool = False) -> None:
        """Give up on the episode. Its data stays in staging (verify reports it) unless ``discard``."""
        if self._state in ("committed", "aborted"):
            return
        self._stop_thread()
        self._state = "aborted"
        try:
            if discard:
                self._store.delete_writing_dir(self._parts)
            else:
                self._heartbeat(force=True, aborted=reason)
        except OSError:
            pass  # Best effort: an unmarked torn episode is still reported by verify.

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self._state in ("open", "failed"):
            self.abort(reason=f"{exc_type.__name__}: {exc}" if exc_type else "closed without commit")

    # ---- internals ----------------------------------------------------------------------------------------

    def _new_image_buffers(self) -> dict[str, np.ndarray]:
        return {c.name: np.empty((self.flush_steps, *c.shape), np.uint8) for c in self.schema.cameras}

    def _check_open(self) -> None:
        self._raise_if_failed()
        if self._state != "open":
            raise ReplayError(f"episode {self.episode_id} is {self._state}; no more writes")

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            self._state = "failed"
            raise ReplayWriteError(
                f"writing episode {self.episode_id} failed; it was not committed: {self._error}"
            ) from self._error

    def _submit(self, *, final_chunks: bool) -> None:
        n = self.length - self._pending_start
        start = self._pending_start
        if final_chunks:
            images = {c: buf[:n] for c, buf in self._pending.items()}
            self._pending = self._new_image_buffers()
            self._pending_start = self.length
        else:
            images = {c: buf[:n].copy() for c, buf in self._pending.items()}
        lowdim = {
            name: np.asarray(values[start : start + n], dtype=LOWDIM_COLUMNS[name])
            for name, values in self._lowdim.items()
        }
        segment = _Segment(start=start, images=images, lowdim=lowdim, final_chunks=final_chunks)
        if self._queue is None:
            self._write_segment(segment)
            self._raise_if_failed()
        else:
            self._queue.put(segment)
            self._raise_if_failed()

    def _drain(self) -> None:
        assert self._queue is not None
        while True:
            segment = self._queue.get()
            try:
                if segment is not None and self._error is None:
                    self._write_segment(segment)
            finally:
                self._queue.task_done()
            if segment is None:
                return

    def _write_segment(self, seg: _Segment) -> None:
        try:
            end = seg.start + len(seg.lowdim["timestamp"])
            if end > self._capacity:
                self._capacity = max(end, 2 * self._capacity)
                _resize_all(self._arrays.values(), self._capacity)
            window = slice(seg.start, end)
            writes = [(self._arrays[f"images/{cam}"], window, frames) for cam, frames in seg.images.items()]
            writes += [(self._arrays[name], window, values) for name, values in seg.lowdim.items()]
            _write_all(writes)
            if seg.final_chunks:
                for cam, frames in seg.images.items():
                    self._image_crcs[cam].extend(chunk_crcs(frames, self.schema.image_chunk_steps))
            self._steps_flushed = end
            self._heartbeat()
        except BaseException as exc:  # noqa: BLE001 - surfaced to the actor on its next call
            self._error = exc

    def _wait_idle(self) -> None:
        if self._queue is not None:
            self._queue.join()
        self._raise_if_failed()

    def _stop_thread(self) -> None:
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _heartbeat(self, *, force: bool = False, aborted: str | None = None) -> None:
        now = time.time()
        if not force and now - self._last_heartbeat < HEARTBEAT_INTERVAL_S:
            return
        self._last_heartbeat = now
        body = {
            "episode_id": self.episode_id,
            **self._meta_fields,
            **writer_identity(),
            "start_time": self._start_time,
            "heartbeat_time": now,
            "steps_flushed": self._steps_flushed,
            "aborted": aborted,
        }
        self._store.location.write_json_atomic(body, *self._parts, WRITER_FILE, durable=False)

    def _build_record(
        self, outcome: Outcome, labelled_by: str | None, tags: tuple[str, ...]
    ) -> EpisodeRecord:
        length = self.length
        _resize_all(self._arrays.values(), length)
        self._store.consolidate_episode(self._parts)
        lowdim = {name: np.asarray(v, dtype=LOWDIM_COLUMNS[name]) for name, v in self._lowdim.items()}
        checksums: dict[str, dict[str, Any]] = {
            f"images/{cam}": {"chunk_steps": self.schema.image_chunk_steps, "crc32": crcs}
            for cam, crcs in self._image_crcs.items()
        }
        for name, values in lowdim.items():
            checksums[name] = {
                "chunk_steps": LOWDIM_CHUNK_STEPS,
                "crc32": chunk_crcs(values, LOWDIM_CHUNK_STEPS),
            }
        spans = true_spans(lowdim["intervention"])
        meta = EpisodeMeta(
            episode_id=self.episode_id,
            **self._meta_fields,
            outcome=outcome,
            labelled_by=labelled_by if outcome is not Outcome.UNLABELLED else None,
            length=length,
            start_time=self._start_time,
            end_time=time.time(),
            intervention_steps=int(lowdim["intervention"].sum()),
            has_ground_truth=bool(np.isfinite(lowdim["progress"]).any()),
            tags=tags,
        )
        stats = {"state": MomentStats.of(lowdim["state"]), "action": MomentStats.of(lowdim["action"])}
        return EpisodeRecord(meta=meta, checksums=checksums, stats=stats, intervention_spans=spans)
