"""Where a store keeps things, and the few file operations whose atomicity the crash-safety argument rests on.

Layout under the store root (a local directory or any fsspec URL)::

    store.json                      format tag, schema version, store schema (written once, exclusively)
    staging/<episode_id>/           local fs: episodes being written, one writer each, never read by samplers
    episodes/<episode_id>/          committed episodes; on object storage also the episodes in flight
        data/                       the episode's zarr group: images/<camera>, state, action, timestamp, ...
        writer.json                 the writer's host, pid and last heartbeat
        commit.json                 local fs: the commit record, moved into place by the commit rename
    commits/<episode_id>.json       object storage: the commit record, written last (one PUT is atomic)
    torn/<episode_id>...            torn episodes set apart by ``verify --quarantine``
    derived/<kind>/<key>/<episode_id>.npy   learners' per-step columns (value, advantage, indicator)

Local filesystems commit by renaming ``staging/<id>`` to ``episodes/<id>`` (rename is atomic and refuses to
replace a non-empty directory). Object stores cannot rename a prefix, so the episode is written in place and the
commit object is the last thing written; readers list ``commits/`` only.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

STORE_FILE = "store.json"
WRITER_FILE = "writer.json"
COMMIT_FILE = "commit.json"
DATA_DIR = "data"


def new_episode_id() -> str:
    """Sortable by creation time, unique across hosts without coordination."""
    now_ns = time.time_ns()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now_ns // 1_000_000_000))
    return f"{stamp}.{now_ns // 1000 % 1_000_000:06d}Z-{uuid.uuid4().hex[:12]}"


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class StoreLocation:
    """An fsspec filesystem plus the root path inside it; local and object stores differ only here."""

    url: str
    fs: fsspec.AbstractFileSystem
    root: str
    storage_options: dict[str, Any]

    @classmethod
    def parse(cls, url: str, storage_options: dict[str, Any] | None = None) -> StoreLocation:
        options = dict(storage_options or {})
        fs, root = fsspec.core.url_to_fs(str(url), **options)
        return cls(url=str(url), fs=fs, root=root.rstrip("/"), storage_options=options)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def url_of(self, *parts: str) -> str:
        """A URL zarr can open with the same storage options."""
        if self.is_local:
            return self.path(*parts)
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return f"{protocol}://{self.path(*parts)}"

    # ---- small JSON objects -------------------------------------------------------------------------------

    def read_json(self, *parts: str) -> dict[str, Any]:
        with self.fs.open(self.path(*parts), "rb") as f:
            return json.loads(f.read())

    def read_many_json(self, paths: list[str]) -> dict[str, dict[str, Any]]:
        """Read many small JSON objects; object stores fetch them concurrently in one call."""
        if not paths:
            return {}
        if self.is_local:
            out = {}
            for p in paths:
                with open(p, "rb") as f:
                    out[p] = json.loads(f.read())
            return out
        raw = self.fs.cat(paths, on_error="raise")
        return {p: json.loads(raw[p]) for p in paths}

    def write_json_atomic(
        self, obj: dict[str, Any], *parts: str, exclusive: bool = False, durable: bool = True
    ) -> None:
        """Readers see the old object or the new one, never a prefix of it.

        Local: write a temporary file, fsync, then rename over (or hard-link for ``exclusive``, which fails if
        the target exists). Object stores: one PUT is atomic; ``exclusive`` is a check-then-put, which is
        enough because only ``store.json`` uses it and creating a store is not a hot race. ``durable=False``
        skips the fsyncs for objects that are rewritten often and worthless after a power cut (heartbeats).
        """
        data = json.dumps(obj, indent=1, sort_keys=True).encode()
        target = self.path(*parts)
        if not self.is_local:
            if exclusive and self.fs.exists(target):
                raise FileExistsError(target)
            self.fs.pipe_file(target, data)
            return
        directory = os.path.dirname(target)
        os.makedirs(directory, exist_ok=True)
        tmp = f"{target}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        try:
            if exclusive:
                os.link(tmp, target)
            else:
                os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        if durable:
            _fsync_dir(directory)

    def write_bytes_atomic(self, data: bytes, *parts: str) -> None:
        target = self.path(*parts)
        if not self.is_local:
            self.fs.pipe_file(target, data)
            return
        directory = os.path.dirname(target)
        os.makedirs(directory, exist_ok=True)
        tmp = f"{target}.{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def list_names(self, *parts: str) -> list[str]:
        """Names directly under a folder (empty when it does not exist)."""
        path = self.path(*parts)
        if self.is_local:
            try:
                return sorted(n for n in os.listdir(path) if not n.endswith(".tmp"))
            except FileNotFoundError:
                return []
        try:
            entries = self.fs.ls(path, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in entries)

    # ---- episode commit protocol --------------------------------------------------------------------------

    def writing_parts(self, episode_id: str) -> tuple[str, ...]:
        return ("staging", episode_id) if self.is_local else ("episodes", episode_id)

    def record_parts(self, episode_id: str) -> tuple[str, ...]:
        return ("episodes", episode_id, COMMIT_FILE) if self.is_local else ("commits", f"{episode_id}.json")

    def committed_ids(self) -> list[str]:
        if self.is_local:
            return self.list_names("episodes")
        return [n[: -len(".json")] for n in self.list_names("commits") if n.endswith(".json")]

    def commit(self, episode_id: str, record: dict[str, Any]) -> None:
        """The one step that makes an episode visible."""
        if not self.is_local:
            target = self.record_parts(episode_id)
            if self.fs.exists(self.path(*target)):
                raise FileExistsError(f"episode {episode_id} is already committed")
            self.write_json_atomic(record, *target)
            return
        staging = self.path("staging", episode_id)
        self.write_json_atomic(record, "staging", episode_id, COMMIT_FILE)
        _fsync_tree(staging)
        os.makedirs(self.path("episodes"), exist_ok=True)
        # rename(2) of a directory is atomic and fails if the target exists and is not empty.
        os.rename(staging, self.path("episodes", episode_id))
        _fsync_dir(self.path("episodes"))
        _fsync_dir(self.path("staging"))

    def in_flight_ids(self) -> list[str]:
        """Episodes started but not committed (and not yet set apart)."""
        if self.is_local:
            return self.list_names("staging")
        committed = set(self.committed_ids())
        return [n for n in self.list_names("episodes") if n not in committed]

    def quarantine(self, episode_id: str, reason: dict[str, Any]) -> None:
        """Set a torn episode apart for good; its data is kept for forensics, never deleted here."""
        if self.is_local:
            # The marker goes in first, so that a crash between the two steps cannot leave a set-apart episode
            # without one.
            self.write_json_atomic(reason, "staging", episode_id, "torn.json")
            os.makedirs(self.path("torn"), exist_ok=True)
            os.rename(self.path("staging", episode_id), self.path("torn", episode_id))
            return
        # Object stores cannot move a prefix cheaply: a marker sets it apart and in_flight_ids skips it.
        self.write_json_atomic(reason, "torn", f"{episode_id}.json")

    def quarantined_ids(self) -> list[str]:
        names = self.list_names("torn")
        return names if self.is_local else [n[: -len(".json")] for n in names if n.endswith(".json")]

    def quarantine_reason(self, episode_id: str) -> dict[str, Any]:
        """What ``quarantine`` was told about the episode, over what its writer's heartbeat says (seed, round,
        purpose); {} when neither can be read."""
        parts = ("torn", episode_id, "torn.json") if self.is_local else ("torn", f"{episode_id}.json")
        writer = (
            ("torn", episode_id, WRITER_FILE)
            if self.is_local
            else (*self.writing_parts(episode_id), WRITER_FILE)
        )
        reason: dict[str, Any] = {}
        for found in (parts, writer):
            try:
                # The writer's heartbeat, kept with the data, names what it recorded when the marker does not.
                reason = {**self.read_json(*found), **reason}
            except (FileNotFoundError, ValueError):
                continue
        return reason


def writer_identity() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed but not yet reaped by its parent) still answers kill(0); it writes nothing more.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _fsync_tree(root: str) -> None:
    """Flush every file and folder of an episode so the rename never publishes data still in page cache."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(dirpath)
