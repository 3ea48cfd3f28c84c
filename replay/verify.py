"""Integrity checks: every chunk of every committed episode against the crc32 recorded at commit.

A damaged chunk shows up either as a decompression error or as a checksum mismatch; both are reported with the
episode, the array and the chunk index. Torn episodes (staging entries whose writer died) are listed too.
"""

from __future__ import annotations

import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from replay.chunks import read_chunks
from replay.schema import CorruptEpisodeError, EpisodeRecord

if TYPE_CHECKING:
    from replay.store import InFlightEpisode, ReplayStore


@dataclass(frozen=True)
class ChunkProblem:
    episode_id: str
    array: str
    chunk: int | None
    reason: str


@dataclass
class VerifyReport:
    committed: int = 0
    steps: int = 0
    checked_data: bool = False
    problems: list[ChunkProblem] = field(default_factory=list)
    in_flight: list[InFlightEpisode] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)

    @property
    def torn(self) -> list[InFlightEpisode]:
        return [e for e in self.in_flight if e.status in ("torn", "aborted")]

    @property
    def corrupt_episode_ids(self) -> list[str]:
        return sorted({p.episode_id for p in self.problems})

    @property
    def ok(self) -> bool:
        """No damaged committed data and no torn episode waiting to be set apart."""
        return not self.problems and not self.torn


def check_chunk(record: EpisodeRecord, array: str, chunk: int, values: np.ndarray) -> None:
    """Raise CorruptEpisodeError if ``values`` (chunk ``chunk`` of ``array``) differ from what was committed."""
    expected = record.checksums[array]["crc32"]
    if chunk >= len(expected):
        raise CorruptEpisodeError(record.meta.episode_id, array, chunk, "chunk beyond the committed length")
    got = zlib.crc32(np.ascontiguousarray(values))
    if got != expected[chunk]:
        raise CorruptEpisodeError(
            record.meta.episode_id, array, chunk, f"crc32 {got:#010x} != committed {expected[chunk]:#010x}"
        )


def verify_episode(store: ReplayStore, record: EpisodeRecord) -> list[ChunkProblem]:
    episode_id = record.meta.episode_id
    try:
        arrays = store.open_episode(episode_id)
    except Exception as exc:  # noqa: BLE001 - any failure to open is a finding, not a crash of verify
        return [ChunkProblem(episode_id, "metadata", None, f"cannot open episode: {exc}")]
    problems = []
    for name, info in record.checksums.items():
        arr = arrays.get(name)
        if arr is None:
            problems.append(ChunkProblem(episode_id, name, None, "array missing"))
            continue
        if arr.shape[0] != record.meta.length:
            problems.append(
                ChunkProblem(
                    episode_id, name, None, f"length {arr.shape[0]} != committed {record.meta.length}"
                )
            )
            continue
        step = int(info["chunk_steps"])
        chunks = range(len(info["crc32"]))
        # Checksums grouped otherwise than the array's chunks (not written by this package) are read slice by slice.
        blocks = read_chunks([(arr, chunk) for chunk in chunks]) if step == arr.chunks[0] else None
        for chunk in chunks:
            try:
                block = arr[chunk * step : (chunk + 1) * step] if blocks is None else blocks[chunk]
                if isinstance(block, BaseException):
                    raise block
                check_chunk(record, name, chunk, block)
            except CorruptEpisodeError as exc:
                problems.append(ChunkProblem(episode_id, name, chunk, exc.reason))
            except Exception as exc:  # noqa: BLE001 - a chunk that fails to decode is damaged
                problems.append(
                    ChunkProblem(episode_id, name, chunk, f"unreadable: {type(exc).__name__}: {exc}")
                )
    return problems


def verify_store(
    store: ReplayStore, *, check_data: bool = True, workers: int = 2, stale_after_s: float = 600.0
) -> VerifyReport:
    records = store.records(reload=True)
    report = VerifyReport(committed=len(records), steps=sum(r.meta.length for r in records.values()))
    for episode_id, reason in store.unreadable_records.items():
        report.problems.append(ChunkProblem(episode_id, "commit record", None, reason))
    if check_data:
        report.checked_data = True
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for problems in pool.map(lambda r: verify_episode(store, r), records.values()):
                report.problems.extend(problems)
    report.in_flight = store.in_flight(stale_after_s=stale_after_s)
    report.quarantined = store.location.quarantined_ids()
    return report
