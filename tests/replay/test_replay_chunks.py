from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import zarr
from episode_data import SCHEMA, expected_episode, write_episode
from zarr.codecs import BloscCodec, BytesCodec, ZstdCodec

from replay import CorruptEpisodeError
from replay.chunks import direct_readable, read_chunks, read_columns
from replay.dataset import FrameWindowDataset


def _chunk_count(array: zarr.Array) -> int:
    return -(-array.shape[0] // array.chunks[0])


def test_chunks_and_columns_read_exactly_what_zarr_reads(store):
    # Lengths 9 and 12 with 4-step image chunks: one episode ends inside a chunk, the other on a boundary.
    ids = [write_episode(store, seed=0, length=9), write_episode(store, seed=1, length=12)]
    for episode_id in ids:
        arrays = store.open_episode(episode_id)
        assert all(direct_readable(a) for a in arrays.values()), (
            "the store's own layout takes the direct path"
        )
        requests = [(a, c) for a in arrays.values() for c in range(_chunk_count(a))]
        for (array, chunk), block in zip(requests, read_chunks(requests), strict=True):
            steps = array.chunks[0]
            np.testing.assert_array_equal(block, array[chunk * steps : (chunk + 1) * steps])
            assert block.dtype == array.dtype
        for array, column in zip(arrays.values(), read_columns(list(arrays.values())), strict=True):
            np.testing.assert_array_equal(column, array[:])
    want = expected_episode(0, 9)["images/front"]
    (last,) = read_chunks([(store.open_episode(ids[0])["images/front"], 2)])
    np.testing.assert_array_equal(last, want[8:9])


def test_a_chunk_zarr_never_wrote_reads_as_fill_and_passes_its_checksum(store):
    with store.episode_writer(robot_id="arm0", round=0, policy_version="p0", task="dark") as writer:
        for t in range(8):
            # The front camera is covered for the first 4 steps: an all-zero chunk, which zarr does not write.
            front = (
                np.zeros(SCHEMA.camera("front").shape, np.uint8)
                if t < 4
                else np.full((24, 32, 3), t, np.uint8)
            )
            writer.add_step(
                {"front": front, "wrist": np.full((16, 16, 3), t, np.uint8)}, np.zeros(3), np.zeros(2), t
            )
        writer.commit("success", labelled_by="test")
    front = store.open_episode(writer.episode_id)["images/front"]
    absent = store.location.path("episodes", writer.episode_id, "data", "images", "front", "c.0.0.0.0")
    assert not os.path.exists(absent), "zarr wrote the all-zero chunk, so this test no longer covers a gap"
    blocks = read_chunks([(front, 0), (front, 1)])
    np.testing.assert_array_equal(blocks[0], np.zeros((4, 24, 32, 3), np.uint8))
    np.testing.assert_array_equal(blocks[1][:, 0, 0, 0], [4, 5, 6, 7])
    batch = FrameWindowDataset(store).__getitems__([(writer.episode_id, 1), (writer.episode_id, 6)])
    assert batch["images.front"][0].sum() == 0 and int(batch["images.front"][1, 0, 0, 0]) == 6


def test_arrays_in_another_layout_go_through_zarr(tmp_path):
    group = zarr.open_group(str(tmp_path / "other"), mode="w", zarr_format=3)
    values = np.arange(10 * 6, dtype=np.float32).reshape(10, 6)
    other_endian = "big" if sys.byteorder == "little" else "little"
    arrays = [
        group.create_array("zstd", shape=(10, 6), chunks=(4, 6), dtype="float32", compressors=ZstdCodec()),
        group.create_array("split", shape=(10, 6), chunks=(4, 3), dtype="float32", compressors=BloscCodec()),
        group.create_array(
            "swapped",
            shape=(10, 6),
            chunks=(4, 6),
            dtype="float32",
            serializer=BytesCodec(endian=other_endian),
            compressors=BloscCodec(),
        ),
        group.create_array("sharded", shape=(10, 6), chunks=(2, 6), shards=(4, 6), dtype="float32"),
    ]
    for array in arrays:
        array[:] = values
        assert not direct_readable(array), array.name
    blocks = read_chunks([(a, 2) for a in arrays])
    for array, block in zip(arrays, blocks, strict=True):
        steps = array.chunks[0]  # the sharded array's read chunk is its inner chunk, 2 steps
        np.testing.assert_array_equal(block, values[2 * steps : 3 * steps], err_msg=array.name)
    for array, column in zip(arrays, read_columns(arrays), strict=True):
        np.testing.assert_array_equal(column, values, err_msg=array.name)


def test_undecodable_bytes_come_back_as_the_error_and_sampling_names_the_chunk(store):
    episode_id = write_episode(store, seed=2, length=12)
    wrist = store.open_episode(episode_id)["images/wrist"]
    path = store.location.path("episodes", episode_id, "data", "images", "wrist", "c.1.0.0.0")
    with open(path, "wb") as file:
        file.write(b"not a blosc frame")
    good, bad = read_chunks([(wrist, 0), (wrist, 1)])
    np.testing.assert_array_equal(good, expected_episode(2, 12)["images/wrist"][:4])
    assert isinstance(bad, BaseException)
    with pytest.raises(CorruptEpisodeError, match=episode_id) as info:
        FrameWindowDataset(store).__getitems__([(episode_id, 0), (episode_id, 5)])
    assert (info.value.array, info.value.chunk) == ("images/wrist", 1)
