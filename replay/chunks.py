"""Whole-chunk reads of committed episode arrays, many at a time, without zarr's per-chunk machinery.

A learner's first pass over a store decodes every image chunk once. Through ``zarr.Array`` each chunk costs about
0.7 ms of selection indexing, codec-pipeline dispatch and thread hand-offs around a 0.03 ms file read and a 0.1 ms
Blosc decode (``benchmarks/bench_replay_sample.py``, 96x96 images, 4 steps a chunk), so the cold pass ran at a
third of the speed its I/O allows. For arrays in the layout ``ReplayStore`` writes (zarr v3, regular chunks over
the step axis only, bytes then Blosc codecs, no sharding) ``read_chunks`` fetches each chunk's bytes from the
array's store (plain file reads on a local store, one concurrent gather on object storage) and decodes them with
numcodecs' Blosc, the codec zarr itself calls. Any other array goes through zarr unchanged.

The result is the same as ``array[c * n : (c + 1) * n]``: the edge chunk is cut to the array's length, and a chunk
zarr never wrote (all fill value; zarr skips writing those) reads as the fill value.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import zarr
from numcodecs import Blosc
from zarr.codecs import BloscCodec, BytesCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.chunk_grids import RegularChunkGrid
from zarr.core.sync import sync as zarr_sync
from zarr.storage import LocalStore

# Blosc frames carry their own typesize, shuffle and compressor, so one decoder reads every chunk.
_BLOSC = Blosc()


def direct_readable(array: zarr.Array) -> bool:
    """True when ``read_chunks`` can decode the array's chunks itself (the layout ``ReplayStore`` writes)."""
    metadata = array.metadata
    if metadata.zarr_format != 3 or not isinstance(metadata.chunk_grid, RegularChunkGrid):
        return False
    if tuple(metadata.chunk_grid.chunk_shape[1:]) != tuple(array.shape[1:]):
        return False
    codecs = metadata.codecs
    if len(codecs) != 2 or not isinstance(codecs[0], BytesCodec) or not isinstance(codecs[1], BloscCodec):
        return False
    dtype = np.dtype(array.dtype)
    endian = codecs[0].endian
    return dtype.itemsize == 1 or (endian is not None and endian.value == sys.byteorder)


def _through_zarr(array: zarr.Array, chunk: int) -> np.ndarray:
    steps = array.chunks[0]
    return array[chunk * steps : (chunk + 1) * steps]


def _decode(array: zarr.Array, chunk: int, raw: bytes | memoryview | None) -> np.ndarray:
    steps = array.chunks[0]
    valid = min(steps, array.shape[0] - chunk * steps)
    if chunk < 0 or valid <= 0:
        raise IndexError(f"chunk {chunk} is outside an array of {array.shape[0]} steps")
    dtype = np.dtype(array.dtype)
    if raw is None:
        return np.full((valid, *array.shape[1:]), array.fill_value, dtype=dtype)
    flat = np.frombuffer(_BLOSC.decode(raw), dtype=dtype)
    chunk_shape = tuple(array.chunks)
    if flat.size != int(np.prod(chunk_shape)):
        raise ValueError(
            f"chunk {chunk} decodes to {flat.size} values; its chunk shape {chunk_shape} needs more"
        )
    return flat.reshape(chunk_shape)[:valid]


def _chunk_key(array: zarr.Array, chunk: int) -> str:
    return array.metadata.encode_chunk_key((chunk, *([0] * (array.ndim - 1))))


def _local_bytes(array: zarr.Array, chunk: int) -> bytes | None:
    store_path = array.store_path
    # os.path rather than pathlib: this runs once per chunk, and pathlib's parsing was a third of the read.
    path = os.path.join(str(store_path.store.root), store_path.path, _chunk_key(array, chunk))
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        return None


def read_chunks(requests: Sequence[tuple[zarr.Array, int]]) -> list[np.ndarray | BaseException]:
    """Decoded chunks ``(array, chunk index along the step axis)``, in order; a failed read is returned as its
    exception (not raised) so the caller can name the episode it belongs to."""
    results: list[np.ndarray | BaseException | None] = [None] * len(requests)
    remote: list[int] = []
    for position, (array, chunk) in enumerate(requests):
        try:
            if not direct_readable(array):
                results[position] = _through_zarr(array, chunk)
            elif isinstance(array.store_path.store, LocalStore):
                results[position] = _decode(array, chunk, _local_bytes(array, chunk))
            else:
                remote.append(position)
        except Exception as exc:  # noqa: BLE001 - handed back to the caller, which names the episode
            results[position] = exc
    if remote:
        prototype = default_buffer_prototype()

        async def fetch_all() -> list[Any]:
            gets = []
            for position in remote:
                array, chunk = requests[position]
                gets.append((array.store_path / _chunk_key(array, chunk)).get(prototype=prototype))
            return await asyncio.gather(*gets, return_exceptions=True)

        for position, fetched in zip(remote, zarr_sync(fetch_all()), strict=True):
            array, chunk = requests[position]
            if isinstance(fetched, BaseException):
                results[position] = fetched
                continue
            try:
                raw = None if fetched is None else fetched.as_numpy_array()
                results[position] = _decode(array, chunk, raw)
            except Exception as exc:  # noqa: BLE001 - as above
                results[position] = exc
    return results  # type: ignore[return-value] - every position was answered above


def read_columns(arrays: Sequence[zarr.Array]) -> list[np.ndarray | BaseException]:
    """Each array whole (``array[:]``), all chunks of all arrays read in one ``read_chunks`` call."""
    requests = [(array, c) for array in arrays for c in range(-(-array.shape[0] // array.chunks[0]))]
    blocks = iter(read_chunks(requests))
    columns: list[np.ndarray | BaseException] = []
    for array in arrays:
        parts = [next(blocks) for _ in range(-(-array.shape[0] // array.chunks[0]))]
        failed = next((p for p in parts if isinstance(p, BaseException)), None)
        if failed is not None:
            columns.append(failed)
        elif parts:
            columns.append(np.concatenate(parts))
        else:
            columns.append(np.empty((0, *array.shape[1:]), dtype=np.dtype(array.dtype)))
    return columns
