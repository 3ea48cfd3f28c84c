"""ReplayStore: open or create a store, list committed episodes, read them, and keep derived columns beside them.

See ``replay.layout`` for the folders and the commit protocol. A ReplayStore is cheap to pickle (it carries its
URL and storage options, not open handles), so DataLoader workers and Ray tasks reopen it where they run.
"""

from __future__ import annotations

import io
import logging
import re
import shutil
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec
from zarr.errors import ZarrUserWarning

from replay.layout import DATA_DIR, STORE_FILE, WRITER_FILE, StoreLocation, pid_alive, writer_identity
from replay.schema import (
    DERIVED_KINDS,
    LOWDIM_CHUNK_STEPS,
    LOWDIM_COLUMNS,
    SCHEMA_VERSION,
    STORE_FORMAT,
    EpisodeRecord,
    MomentStats,
    NotAStoreError,
    Outcome,
    ReplayError,
    SchemaMismatchError,
    SchemaVersionError,
    StoreSchema,
)
from replay.writer import EpisodeWriter

log = logging.getLogger(__name__)

_DERIVED_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Chunk files named c.<t>.0.0.0 side by side instead of nested folders: fewer inodes to create and fsync.
_FLAT_CHUNK_KEYS = {"name": "default", "separator": "."}
# A writer on another host whose heartbeat is older than this is presumed dead.
DEFAULT_STALE_AFTER_S = 600.0


# How long open_or_create waits for a concurrent creator to finish writing store.json.
CREATE_RACE_WAIT_S = 5.0


@dataclass(frozen=True)
class InFlightEpisode:
    """An episode in staging: still being written, or torn (its writer died or gave up)."""

    episode_id: str
    status: str  # "writing", "torn" or "aborted"
    robot_id: str
    steps_flushed: int
    host: str
    pid: int
    heartbeat_age_s: float
    reason: str | None
    # What the writer was recording (None when its writer.json is gone): a torn episode's seed must not be drawn
    # again for the same round and purpose.
    seed: int | None = None
    round: int | None = None
    purpose: str | None = None


class ReplayStore:
    """A store of committed episodes. Construct with ``create``, ``open`` or ``open_or_create``."""

    def __init__(self, location: StoreLocation, schema: StoreSchema) -> None:
        self.location = location
        self.schema = schema
        self._records: dict[str, EpisodeRecord] = {}
        self.unreadable_records: dict[str, str] = {}

    # ---- opening --------------------------------------------------------------------------------------------

    @classmethod
    def create(
        cls, url: str, schema: StoreSchema, *, storage_options: dict[str, Any] | None = None
    ) -> ReplayStore:
        location = StoreLocation.parse(url, storage_options)
        if location.fs.exists(location.path(STORE_FILE)):
            raise FileExistsError(f"a replay store already exists at {url}")
        if location.is_local and location.fs.exists(location.root) and location.fs.ls(location.root):
            raise NotAStoreError(
                f"{url} exists and is not empty; refusing to create a replay store inside it"
            )
        body = {"format": STORE_FORMAT, "schema_version": SCHEMA_VERSION, "schema": schema.to_dict()}
        location.fs.makedirs(location.root, exist_ok=True)
        location.write_json_atomic({**body, "created": time.time()}, STORE_FILE, exclusive=True)
        return cls(location, schema)

    @classmethod
    def open(cls, url: str, *, storage_options: dict[str, Any] | None = None) -> ReplayStore:
        location = StoreLocation.parse(url, storage_options)
        try:
            body = location.read_json(STORE_FILE)
        except FileNotFoundError:
            raise NotAStoreError(f"{url} is not a replay store (no {STORE_FILE})") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise NotAStoreError(f"{url} is not a replay store ({STORE_FILE} is not JSON: {exc})") from None
        if not isinstance(body, dict) or body.get("format") != STORE_FORMAT:
            raise NotAStoreError(f"{url} is not a replay store ({STORE_FILE} has no format '{STORE_FORMAT}')")
        if body.get("schema_version") != SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{url} has schema version {body.get('schema_version')}; this code reads version {SCHEMA_VERSION}"
            )
        return cls(location, StoreSchema.from_dict(body["schema"]))

    @classmethod
    def open_or_create(
        cls, url: str, schema: StoreSchema, *, storage_options: dict[str, Any] | None = None
    ) -> ReplayStore:
        """Open the store, creating it on first use; two processes racing here end up with one store.

        The loser of a race may look while the winner's ``store.json`` is still being written (the folder holds
        only its temporary file), so it keeps trying to open for ``CREATE_RACE_WAIT_S`` before giving up.
        """
        try:
            store = cls.create(url, schema, storage_options=storage_options)
        except (FileExistsError, NotAStoreError):
            deadline = time.monotonic() + CREATE_RACE_WAIT_S
            while True:
                try:
                    store = cls.open(url, storage_options=storage_options)
                    break
                except NotAStoreError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        if not store.schema.same_layout(schema):
            raise SchemaMismatchError(f"{url} holds {store.schema}, not {schema}")
        return store

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.location.url, "options": self.location.storage_options, "schema": self.schema}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(StoreLocation.parse(state["url"], state["options"]), state["schema"])

    def __repr__(self) -> str:
        return f"ReplayStore({self.location.url!r}, cameras={list(self.schema.camera_names)})"

    # ---- writing ----------------------------------------------------------------------------------------------

    def episode_writer(
        self, *, robot_id: str, round: int, policy_version: str, task: str, **options: Any
    ) -> EpisodeWriter:
        """Start an episode; see ``EpisodeWriter`` for ``flush_steps``, ``background`` and ``expected_steps``."""
        return EpisodeWriter(
            self, robot_id=robot_id, round=round, policy_version=policy_version, task=task, **options
        )

    def _zarr_store(self, parts: tuple[str, ...], read_only: bool) -> Any:
        """The zarr group of an episode lives in ``data/`` beside its writer.json and commit record."""
        parts = (*parts, DATA_DIR)
        if self.location.is_local:
            return zarr.storage.LocalStore(self.location.path(*parts), read_only=read_only)
        return zarr.storage.FsspecStore.from_url(
            self.location.url_of(*parts), storage_options=self.location.storage_options, read_only=read_only
        )

    def create_episode_arrays(self, parts: tuple[str, ...], capacity: int) -> dict[str, zarr.Array]:
        group = zarr.open_group(store=self._zarr_store(parts, read_only=False), mode="a", zarr_format=3)
        images = group.create_group("images")
        arrays: dict[str, zarr.Array] = {}
        image_codec = BloscCodec(cname="zstd", clevel=self.schema.image_clevel, shuffle="noshuffle")
        for cam in self.schema.cameras:
            arrays[f"images/{cam.name}"] = images.create_array(
                cam.name,
                shape=(capacity, *cam.shape),
                chunks=(self.schema.image_chunk_steps, *cam.shape),
                dtype="uint8",
                compressors=image_codec,
                fill_value=0,
                chunk_key_encoding=_FLAT_CHUNK_KEYS,
            )
        dims = {"state": (self.schema.state_dim,), "action": (self.schema.action_dim,)}
        for name, dtype in LOWDIM_COLUMNS.items():
            tail = dims.get(name, ())
            arrays[name] = group.create_array(
                name,
                shape=(capacity, *tail),
                chunks=(LOWDIM_CHUNK_STEPS, *tail),
                dtype=dtype,
                compressors=BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
                fill_value=0,
                chunk_key_encoding=_FLAT_CHUNK_KEYS,
            )
        return arrays

    def consolidate_episode(self, parts: tuple[str, ...]) -> None:
        """One metadata read per episode for readers (matters on object storage)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ZarrUserWarning)
            zarr.consolidate_metadata(self._zarr_store(parts, read_only=False))

    def delete_writing_dir(self, parts: tuple[str, ...]) -> None:
        path = self.location.path(*parts)
        if self.location.is_local:
            shutil.rmtree(path, ignore_errors=True)
        elif self.location.fs.exists(path):
            self.location.fs.rm(path, recursive=True)

    def set_outcome(self, episode_id: str, outcome: Outcome | str, labelled_by: str) -> EpisodeRecord:
        """Label (or relabel) a committed episode; only its commit record is rewritten, atomically."""
        record = self.record(episode_id, reload=True).relabelled(Outcome(outcome), labelled_by)
        self.location.write_json_atomic(record.to_json(), *self.location.record_parts(episode_id))
        self._records[episode_id] = record
        return record

    # ---- reading ---------------------------------------------------------------------------------------------

    def episode_ids(self) -> list[str]:
        """Committed episodes, oldest first. Episodes in staging never appear here."""
        return self.location.committed_ids()

    def records(self, *, reload: bool = False) -> dict[str, EpisodeRecord]:
        """Commit records of every committed episode. ``reload`` rereads cached ones to pick up relabels."""
        ids = self.episode_ids()
        wanted = ids if reload else [i for i in ids if i not in self._records]
        paths = {self.location.path(*self.location.record_parts(i)): i for i in wanted}
        try:
            raw = self.location.read_many_json(list(paths))
        except (ValueError, OSError):
            raw = {}
            for path in paths:
                try:
                    raw.update(self.location.read_many_json([path]))
                except (ValueError, OSError) as exc:
                    self.unreadable_records[paths[path]] = str(exc)
        for path, body in raw.items():
            try:
                self._records[paths[path]] = EpisodeRecord.from_json(body)
            except (KeyError, TypeError, ValueError) as exc:
                self.unreadable_records[paths[path]] = f"bad commit record: {exc}"
        for bad in self.unreadable_records:
            log.warning("episode %s has an unreadable commit record and is skipped", bad)
        return {i: self._records[i] for i in ids if i in self._records}

    def record(self, episode_id: str, *, reload: bool = False) -> EpisodeRecord:
        if reload or episode_id not in self._records:
            try:
                body = self.location.read_json(*self.location.record_parts(episode_id))
            except FileNotFoundError:
                raise KeyError(f"no committed episode {episode_id} in {self.location.url}") from None
            self._records[episode_id] = EpisodeRecord.from_json(body)
        return self._records[episode_id]

    def open_episode(self, episode_id: str) -> dict[str, zarr.Array]:
        """Read-only zarr arrays of a committed episode, keyed 'images/<camera>', 'state', 'action', ..."""
        zstore = self._zarr_store(("episodes", episode_id), read_only=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ZarrUserWarning)
            group = zarr.open_group(store=zstore, mode="r", zarr_format=3, use_consolidated=True)
        arrays = {f"images/{cam}": group["images"][cam] for cam in self.schema.camera_names}
        arrays.update({name: group[name] for name in LOWDIM_COLUMNS})
        return arrays

    def read_episode(self, episode_id: str, columns: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Whole columns of a committed episode as numpy arrays (all recorded columns by default)."""
        arrays = self.open_episode(episode_id)
        names = list(arrays) if columns is None else list(columns)
        return {name: arrays[name][:] for name in names}

    # ---- derived columns -------------------------------------------------------------------------------------

    def _derived_parts(self, kind: str, key: str) -> tuple[str, ...]:
        if kind not in DERIVED_KINDS:
            raise ValueError(f"derived column kind must be one of {sorted(DERIVED_KINDS)}, got {kind!r}")
        if not _DERIVED_KEY.match(key):
            raise ValueError(f"derived column key {key!r} must match {_DERIVED_KEY.pattern}")
        return ("derived", kind, key)

    def write_derived(self, kind: str, key: str, episode_id: str, values: np.ndarray) -> None:
        """Write one episode's column for a value-model version or labelling run; replaces it atomically."""
        parts = self._derived_parts(kind, key)
        length = self.record(episode_id).meta.length
        values = np.asarray(values)
        if values.shape != (length,):
            raise SchemaMismatchError(
                f"{kind} for episode {episode_id} must have shape ({length},), got {values.shape}"
            )
        buf = io.BytesIO()
        np.save(buf, values.astype(DERIVED_KINDS[kind]), allow_pickle=False)
        self.location.write_bytes_atomic(buf.getvalue(), *parts, f"{episode_id}.npy")

    def read_derived(self, kind: str, key: str, episode_id: str) -> np.ndarray | None:
        """The column, or None when it was never written for this episode."""
        path = self.location.path(*self._derived_parts(kind, key), f"{episode_id}.npy")
        try:
            raw = self.location.fs.cat_file(path)
        except FileNotFoundError:
            return None
        return np.load(io.BytesIO(raw), allow_pickle=False)

    def derived_keys(self, kind: str) -> list[str]:
        self._derived_parts(kind, "x")
        return self.location.list_names("derived", kind)

    def derived_episode_ids(self, kind: str, key: str) -> set[str]:
        names = self.location.list_names(*self._derived_parts(kind, key))
        return {n[: -len(".npy")] for n in names if n.endswith(".npy")}

    # ---- staging, statistics, size ----------------------------------------------------------------------------

    def in_flight(self, *, stale_after_s: float = DEFAULT_STALE_AFTER_S) -> list[InFlightEpisode]:
        """Uncommitted episodes with what is known of their writers; 'torn' ones will never be committed."""
        here = writer_identity()["host"]
        out = []
        for episode_id in self.location.in_flight_ids():
            if episode_id in set(self.location.quarantined_ids()):
                continue
            parts = (*self.location.writing_parts(episode_id), WRITER_FILE)
            try:
                hb = self.location.read_json(*parts)
            except (FileNotFoundError, ValueError):
                hb = {}
            age = time.time() - float(hb.get("heartbeat_time", 0.0))
            if hb.get("aborted"):
                status = "aborted"
            elif not hb:
                status = "torn"
            elif hb.get("host") == here:
                status = "writing" if pid_alive(int(hb["pid"])) else "torn"
            else:
                status = "torn" if age > stale_after_s else "writing"
            out.append(
                InFlightEpisode(
                    episode_id=episode_id,
                    status=status,
                    robot_id=str(hb.get("robot_id", "?")),
                    steps_flushed=int(hb.get("steps_flushed", 0)),
                    host=str(hb.get("host", "?")),
                    pid=int(hb.get("pid", -1)),
                    heartbeat_age_s=age,
                    reason=hb.get("aborted") or (None if hb else "no writer.json"),
                    seed=None if hb.get("seed") is None else int(hb["seed"]),
                    round=None if hb.get("round") is None else int(hb["round"]),
                    purpose=hb.get("purpose"),
                )
            )
        return out

    def quarantine_torn(self, *, stale_after_s: float = DEFAULT_STALE_AFTER_S) -> list[str]:
        """Set torn and aborted episodes apart under torn/; returns their ids. Data is kept, not deleted."""
        moved = []
        for entry in self.in_flight(stale_after_s=stale_after_s):
            if entry.status in ("torn", "aborted"):
                # What it was recording stays known: its seed must not be drawn again for its round and purpose.
                drawn = {"seed": entry.seed, "round": entry.round, "purpose": entry.purpose}
                reason = {"reason": entry.status, "time": time.time(), "robot_id": entry.robot_id, **drawn}
                self.location.quarantine(entry.episode_id, reason)
                moved.append(entry.episode_id)
        return moved

    def quarantined(self) -> dict[str, dict[str, Any]]:
        """Episodes set apart by ``quarantine_torn``, by id: why, when, and what they were recording (seed, round,
        purpose; absent for episodes set apart before those were kept)."""
        return {e: self.location.quarantine_reason(e) for e in self.location.quarantined_ids()}

    def task_stats(
        self, records: Iterable[EpisodeRecord] | None = None
    ) -> dict[str, dict[str, dict[str, np.ndarray]]]:
        """Per-task normalisation statistics of state and action: {task: {"state": {"mean", "std", ...}}}."""
        merged: dict[str, dict[str, MomentStats]] = {}
        for record in self.records().values() if records is None else records:
            per_task = merged.setdefault(record.meta.task, {})
            for column, stats in record.stats.items():
                per_task[column] = per_task[column].merge(stats) if column in per_task else stats
        return {task: {c: s.normalization() for c, s in cols.items()} for task, cols in merged.items()}

    def size_bytes(self) -> int:
        try:
            return int(self.location.fs.du(self.location.root, total=True))
        except FileNotFoundError:
            return 0

    def verify(
        self, *, check_data: bool = True, workers: int = 2, stale_after_s: float = DEFAULT_STALE_AFTER_S
    ) -> Any:
        """Check every committed episode against its checksums and report torn ones; see ``replay.verify``."""
        from replay.verify import verify_store

        return verify_store(self, check_data=check_data, workers=workers, stale_after_s=stale_after_s)


def ensure_store(store: ReplayStore | str, storage_options: dict[str, Any] | None = None) -> ReplayStore:
    if isinstance(store, ReplayStore):
        return store
    if not isinstance(store, str):
        raise ReplayError(f"expected a ReplayStore or a URL, got {type(store).__name__}")
    return ReplayStore.open(store, storage_options=storage_options)
