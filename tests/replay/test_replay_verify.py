from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from episode_data import write_episode

from replay import CorruptEpisodeError, FrameIndex, FrameSampler
from replay.dataset import FrameWindowDataset


def _chunk_file(store, episode_id: str, array: str, chunk: int) -> Path:
    """Chunk keys are flat ("c.<t>.0.0.0"), one trailing 0 per non-time dimension."""
    ndim = 4 if array.startswith("images/") else 2 if array in ("state", "action") else 1
    key = ".".join(["c", str(chunk), *["0"] * (ndim - 1)])
    return Path(store.location.path("episodes", episode_id, "data", array, key))


def test_swapped_chunk_is_found_and_named(store):
    good = write_episode(store, seed=0, length=12)
    bad = write_episode(store, seed=1, length=12)
    # A chunk that decodes fine but holds other frames: only the commit checksum can catch it.
    shutil.copyfile(_chunk_file(store, bad, "images/wrist", 0), _chunk_file(store, bad, "images/wrist", 2))
    report = store.verify()
    assert not report.ok
    assert [(p.episode_id, p.array, p.chunk) for p in report.problems] == [(bad, "images/wrist", 2)]
    assert "crc32" in report.problems[0].reason
    assert report.corrupt_episode_ids == [bad] and good not in report.corrupt_episode_ids


def test_garbled_chunk_is_found_and_sampling_refuses_it(store):
    episode_id = write_episode(store, seed=2, length=12)
    path = _chunk_file(store, episode_id, "images/front", 1)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 :] = bytes(len(raw) - len(raw) // 2)
    path.write_bytes(bytes(raw))
    report = store.verify()
    assert [(p.episode_id, p.array, p.chunk) for p in report.problems] == [(episode_id, "images/front", 1)]
    dataset = FrameWindowDataset(store, horizon=2)
    dataset[(episode_id, 0)]  # chunk 0 is intact
    with pytest.raises(CorruptEpisodeError, match=episode_id) as info:
        dataset[(episode_id, 5)]
    assert (info.value.array, info.value.chunk) == ("images/front", 1)


def test_damaged_lowdim_and_missing_data_are_reported(store):
    episode_id = write_episode(store, seed=3, length=9)
    _chunk_file(store, episode_id, "state", 0).write_bytes(b"\x00" * 10)
    other = write_episode(store, seed=4, length=9)
    shutil.rmtree(store.location.path("episodes", other, "data", "action"))
    report = store.verify()
    found = {(p.episode_id, p.array) for p in report.problems}
    assert (episode_id, "state") in found
    assert any(p.episode_id == other for p in report.problems)
    # Commit records stay readable, so the index still lists them; the dataset refuses the damaged bytes.
    index = FrameIndex(store)
    assert index.refresh() == 18
    with pytest.raises(CorruptEpisodeError):
        FrameWindowDataset(store)[(episode_id, 0)]
    assert len(list(FrameSampler(index))) == 18
