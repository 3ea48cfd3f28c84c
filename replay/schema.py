"""What a replay store holds: the store's schema, per-episode metadata and commit records, and its errors.

Everything here is plain dataclasses over numpy and JSON so that actors, learners and tools can read a store's
metadata without zarr, torch or fsspec.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
STORE_FORMAT = "vivarl-replay"

# Derived per-step columns written beside an episode after its commit (by learners, and by an arm's live value:
# the steps at which it asked for a takeover), and the dtype each is stored with.
DERIVED_KINDS: dict[str, np.dtype] = {
    "value": np.dtype(np.float32),
    "advantage": np.dtype(np.float32),
    "indicator": np.dtype(np.bool_),
    "help_request": np.dtype(np.bool_),
}

# Recorded per-step columns besides the camera images, with their dtypes. Ground truth that a source lacks is
# stored as NaN (progress) or -1 (stage) so every episode has the same columns.
LOWDIM_COLUMNS: dict[str, np.dtype] = {
    "state": np.dtype(np.float32),
    "action": np.dtype(np.float32),
    "timestamp": np.dtype(np.float64),
    "intervention": np.dtype(np.bool_),
    "progress": np.dtype(np.float32),
    "stage": np.dtype(np.int16),
}
LOWDIM_CHUNK_STEPS = 1024


class ReplayError(RuntimeError):
    """Base class of every error the replay store raises on purpose."""


class NotAStoreError(ReplayError):
    """The location holds no replay store (or something else entirely)."""


class SchemaVersionError(ReplayError):
    """The store was written with a schema version this code does not read."""


class SchemaMismatchError(ReplayError):
    """Data or a requested schema disagrees with the store's schema."""


class ReplayWriteError(ReplayError):
    """A write failed (disk full, I/O error, lost connection); the episode in flight was not committed."""


class CorruptEpisodeError(ReplayError):
    """Recorded bytes of a committed episode disagree with the checksums written at commit."""

    def __init__(self, episode_id: str, array: str, chunk: int | None, reason: str) -> None:
        where = f"array '{array}'" + ("" if chunk is None else f" chunk {chunk}")
        super().__init__(f"episode {episode_id}: {where} is corrupt: {reason}")
        self.episode_id = episode_id
        self.array = array
        self.chunk = chunk
        self.reason = reason


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    UNLABELLED = "unlabelled"


@dataclass(frozen=True)
class CameraSchema:
    name: str
    height: int
    width: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, 3)


@dataclass(frozen=True)
class StoreSchema:
    """The per-step layout shared by every episode of one store (one robot type)."""

    cameras: tuple[CameraSchema, ...]
    state_names: tuple[str, ...]
    action_names: tuple[str, ...]
    control_hz: float
    # Frames per image chunk: small chunks keep random frame reads cheap; writes are flushed in whole chunks.
    image_chunk_steps: int = 4
    # Blosc zstd level for images; 1 is lossless like every level, and several times faster to write than 5.
    image_clevel: int = 1

    def __post_init__(self) -> None:
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"camera names must be unique, got {names}")
        for name in names:
            if not name or "/" in name or name.startswith("."):
                raise ValueError(f"camera name {name!r} cannot be used as a storage key")
        if not self.state_names or not self.action_names:
            raise ValueError("a store needs at least one state name and one action name")
        if self.image_chunk_steps < 1 or not 0 <= self.image_clevel <= 9:
            raise ValueError("image_chunk_steps must be >= 1 and image_clevel in 0..9")
        if not self.control_hz > 0:
            raise ValueError(f"control_hz must be positive, got {self.control_hz}")

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    def camera(self, name: str) -> CameraSchema:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise KeyError(f"no camera '{name}' in this store (has {list(self.camera_names)})")

    @classmethod
    def from_robot_spec(cls, spec: Any, **overrides: Any) -> StoreSchema:
        """Build from a ``robot_io.spec.RobotSpec`` (read by attribute, so replay does not import robot_io)."""
        cameras = tuple(CameraSchema(c.name, int(c.height), int(c.width)) for c in spec.cameras)
        return cls(
            cameras=cameras,
            state_names=tuple(spec.state_names),
            action_names=tuple(spec.action_names),
            control_hz=float(spec.control_hz),
            **overrides,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cameras"] = [asdict(c) for c in self.cameras]
        d["state_names"] = list(self.state_names)
        d["action_names"] = list(self.action_names)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StoreSchema:
        return cls(
            cameras=tuple(CameraSchema(c["name"], int(c["height"]), int(c["width"])) for c in d["cameras"]),
            state_names=tuple(d["state_names"]),
            action_names=tuple(d["action_names"]),
            control_hz=float(d["control_hz"]),
            image_chunk_steps=int(d.get("image_chunk_steps", 4)),
            image_clevel=int(d.get("image_clevel", 1)),
        )

    def same_names(self, other: StoreSchema) -> bool:
        """True when ``other`` records the same cameras, state and actions, whatever its image sizes."""
        return (
            self.camera_names == other.camera_names
            and self.state_names == other.state_names
            and self.action_names == other.action_names
        )

    def same_layout(self, other: StoreSchema) -> bool:
        """True when data written for ``other`` fits this store (chunking and compression may differ)."""
        return (
            self.cameras == other.cameras
            and self.state_names == other.state_names
            and self.action_names == other.action_names
        )


EPISODE_PURPOSES = ("demo", "rollout", "eval")
# What learners may train on: evaluation episodes measure a policy and are never training data.
TRAINING_PURPOSES = ("demo", "rollout")


@dataclass(frozen=True)
class EpisodeMeta:
    """What is known about an episode apart from its per-step data."""

    episode_id: str
    robot_id: str
    round: int
    policy_version: str
    task: str
    outcome: Outcome
    labelled_by: str | None
    length: int
    start_time: float
    end_time: float
    schema_version: int = SCHEMA_VERSION
    intervention_steps: int = 0
    has_ground_truth: bool = False
    # Why the episode was run: "demo" (demonstrations), "rollout" (policy with corrections), "eval" (no
    # interventions, indicator positive). The round driver counts collection and evaluation separately by it.
    purpose: str = "rollout"
    # Free-form labels known when the episode ends, e.g. the simulator expert's "hesitation" or "retry".
    tags: tuple[str, ...] = ()
    # The episode seed the arm was given (the simulator's scene; None on a real arm's unseeded episode). Fixed
    # evaluation seeds make two policies' evaluations comparable episode by episode.
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.purpose not in EPISODE_PURPOSES:
            raise ValueError(f"episode purpose must be one of {EPISODE_PURPOSES}, got {self.purpose!r}")
        object.__setattr__(self, "tags", tuple(str(t) for t in self.tags))


def event_tags(events: Iterable[str]) -> tuple[str, ...]:
    """``EpisodeMeta.tags`` from "kind:detail" event strings (the simulated expert's "pause:lid:12", "retry:lid",
    "take_over:40"): each kind once, in the order it first happened."""
    kinds: list[str] = []
    for event in events:
        kind = event.split(":", 1)[0]
        if kind not in kinds:
            kinds.append(kind)
    return tuple(kinds)


@dataclass
class MomentStats:
    """Sufficient statistics of a (T, D) column; they add up across episodes without rereading data."""

    count: int
    total: list[float]
    total_sq: list[float]
    minimum: list[float]
    maximum: list[float]

    @classmethod
    def of(cls, values: np.ndarray) -> MomentStats:
        v = np.asarray(values, dtype=np.float64)
        return cls(
            count=int(v.shape[0]),
            total=v.sum(0).tolist(),
            total_sq=np.square(v).sum(0).tolist(),
            minimum=v.min(0).tolist(),
            maximum=v.max(0).tolist(),
        )

    def merge(self, other: MomentStats) -> MomentStats:
        return MomentStats(
            count=self.count + other.count,
            total=np.add(self.total, other.total).tolist(),
            total_sq=np.add(self.total_sq, other.total_sq).tolist(),
            minimum=np.minimum(self.minimum, other.minimum).tolist(),
            maximum=np.maximum(self.maximum, other.maximum).tolist(),
        )

    def normalization(self) -> dict[str, np.ndarray]:
        """mean, std (floored so constant dimensions do not divide by zero), min and max as float32."""
        mean = np.asarray(self.total) / max(self.count, 1)
        var = np.maximum(np.asarray(self.total_sq) / max(self.count, 1) - np.square(mean), 0.0)
        return {
            "mean": mean.astype(np.float32),
            "std": np.maximum(np.sqrt(var), 1e-6).astype(np.float32),
            "min": np.asarray(self.minimum, dtype=np.float32),
            "max": np.asarray(self.maximum, dtype=np.float32),
        }


@dataclass
class EpisodeRecord:
    """The commit record: written last, and its presence is what makes an episode visible to readers.

    ``checksums`` maps each recorded array to the chunk length along time and the crc32 of every chunk's raw
    (uncompressed, C-order) bytes, so a damaged chunk is found and named, whatever the storage backend.
    """

    meta: EpisodeMeta
    checksums: dict[str, dict[str, Any]]
    stats: dict[str, MomentStats]
    intervention_spans: list[tuple[int, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        meta = asdict(self.meta)
        meta["outcome"] = self.meta.outcome.value
        return {
            "meta": meta,
            "checksums": self.checksums,
            "stats": {k: asdict(v) for k, v in self.stats.items()},
            "intervention_spans": [list(s) for s in self.intervention_spans],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> EpisodeRecord:
        meta = dict(d["meta"])
        meta["outcome"] = Outcome(meta["outcome"])
        return cls(
            meta=EpisodeMeta(**meta),
            checksums=dict(d["checksums"]),
            stats={k: MomentStats(**v) for k, v in d["stats"].items()},
            intervention_spans=[(int(a), int(b)) for a, b in d.get("intervention_spans", [])],
        )

    def relabelled(self, outcome: Outcome, labelled_by: str) -> EpisodeRecord:
        return replace(self, meta=replace(self.meta, outcome=outcome, labelled_by=labelled_by))


def true_spans(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) runs where a boolean vector is True."""
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def spans_to_mask(spans: list[tuple[int, int]], length: int) -> np.ndarray:
    mask = np.zeros(length, dtype=bool)
    for a, b in spans:
        mask[a:b] = True
    return mask
