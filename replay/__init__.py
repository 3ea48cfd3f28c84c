"""replay: a crash-safe Zarr store of robot episodes, and the samplers that feed learners from it.

Actors open a ``ReplayStore`` and record each episode through an ``EpisodeWriter`` (chunked background writes,
atomic commit). Learners build a ``FrameIndex`` (filtered by ``EpisodeFilter``) and a ``FrameSampler`` of frame
keys, and read batches through ``replay.dataset.FrameWindowDataset`` / ``make_loader`` (torch is imported only
there). Derived columns (values, advantages, indicators) are written beside recorded data with
``ReplayStore.write_derived``. ``replay.lerobot_io`` exports to and imports from LeRobotDataset v3 (lerobot is
imported only there); ``replay.cli`` is the ``vivarl-replay`` command.
"""

from replay.sampler import EpisodeFilter, FrameIndex, FrameKey, FrameSampler, is_held_out
from replay.schema import (
    DERIVED_KINDS,
    EPISODE_PURPOSES,
    SCHEMA_VERSION,
    TRAINING_PURPOSES,
    CameraSchema,
    CorruptEpisodeError,
    EpisodeMeta,
    EpisodeRecord,
    NotAStoreError,
    Outcome,
    ReplayError,
    ReplayWriteError,
    SchemaMismatchError,
    SchemaVersionError,
    StoreSchema,
    event_tags,
)
from replay.store import InFlightEpisode, ReplayStore
from replay.verify import ChunkProblem, VerifyReport
from replay.writer import EpisodeWriter

__all__ = [
    "DERIVED_KINDS",
    "EPISODE_PURPOSES",
    "SCHEMA_VERSION",
    "TRAINING_PURPOSES",
    "CameraSchema",
    "ChunkProblem",
    "CorruptEpisodeError",
    "EpisodeFilter",
    "EpisodeMeta",
    "EpisodeRecord",
    "EpisodeWriter",
    "FrameIndex",
    "FrameKey",
    "FrameSampler",
    "InFlightEpisode",
    "NotAStoreError",
    "Outcome",
    "ReplayError",
    "ReplayStore",
    "ReplayWriteError",
    "SchemaMismatchError",
    "SchemaVersionError",
    "StoreSchema",
    "VerifyReport",
    "event_tags",
    "is_held_out",
]
