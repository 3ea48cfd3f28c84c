"""The store on a real S3-compatible server: moto in server mode on 127.0.0.1, started by the test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from episode_data import SCHEMA, add_steps, assert_episode_matches, expected_episode, write_episode

from replay import FrameIndex, FrameSampler, ReplayStore
from replay.dataset import FrameWindowDataset


def _moto_server_command() -> list[str] | None:
    beside = Path(sys.executable).with_name("moto_server")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("moto_server")
    return [found] if found else None


@pytest.fixture(scope="module")
def s3_options():
    command = _moto_server_command()
    if command is None:
        pytest.skip(
            "moto_server is not installed (pip install 'moto[server]'), so no S3 server can be started"
        )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [*command, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not come up on {endpoint}")
                time.sleep(0.1)
        options = {
            "endpoint_url": endpoint,
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"region_name": "us-west-2"},
        }
        import s3fs

        s3fs.S3FileSystem(**options).mkdir("replay-bucket")
        yield options
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_s3_round_trip_commit_protocol_and_sampling(s3_options):
    url = f"s3://replay-bucket/run-{os.getpid()}-{time.time_ns()}"
    store = ReplayStore.create(url, SCHEMA, storage_options=s3_options)
    ids = [write_episode(store, seed, 9 + seed, round=seed) for seed in range(2)]

    # An episode in flight on object storage: data lands in place, but with no commit object nobody sees it.
    writer = store.episode_writer(robot_id="arm9", round=0, policy_version="p", task="t", flush_steps=4)
    add_steps(writer, expected_episode(5, 8), 0, 8)
    writer.flush()

    reader = ReplayStore.open(url, storage_options=s3_options)
    assert reader.schema == SCHEMA
    assert reader.episode_ids() == sorted(ids)
    for seed, episode_id in enumerate(ids):
        assert_episode_matches(reader, episode_id, seed, 9 + seed)
    (entry,) = reader.in_flight()
    assert (entry.episode_id, entry.status, entry.steps_flushed) == (writer.episode_id, "writing", 8)
    writer.abort("operator stop")
    assert [e.status for e in reader.in_flight()] == ["aborted"]
    assert reader.quarantine_torn() == [writer.episode_id]
    assert reader.in_flight() == [] and reader.episode_ids() == sorted(ids)

    reader.write_derived("value", "v1", ids[1], np.linspace(0, 1, 10))
    np.testing.assert_allclose(reader.read_derived("value", "v1", ids[1]), np.linspace(0, 1, 10), rtol=1e-6)
    reader.set_outcome(ids[0], "failure", "operator")
    assert ReplayStore.open(url, storage_options=s3_options).record(ids[0]).meta.outcome.value == "failure"

    sampler = FrameSampler(FrameIndex(reader), seed=1)
    keys = list(sampler)
    assert len(keys) == 19
    batch = FrameWindowDataset(reader, horizon=2, value_key="v1").__getitems__(keys)
    assert batch["images.front"].shape == (19, 24, 32, 3)
    # Chunks on object storage are fetched in one gather and decoded beside zarr (replay.chunks): same frames.
    for row, (episode_id, step) in enumerate(keys):
        want = expected_episode(ids.index(episode_id), 9 + ids.index(episode_id))
        for camera in SCHEMA.camera_names:
            np.testing.assert_array_equal(
                batch[f"images.{camera}"][row].numpy(), want[f"images/{camera}"][step]
            )
        np.testing.assert_array_equal(batch["state"][row].numpy(), want["state"][step])
    report = reader.verify()
    assert report.ok and report.committed == 2 and report.quarantined == [writer.episode_id]


def test_s3_corrupted_chunk_is_reported(s3_options):
    import s3fs

    url = f"s3://replay-bucket/corrupt-{time.time_ns()}"
    store = ReplayStore.create(url, SCHEMA, storage_options=s3_options)
    episode_id = write_episode(store, 3, 12)
    fs = s3fs.S3FileSystem(**s3_options)
    chunks = f"{url.removeprefix('s3://')}/episodes/{episode_id}/data/images/wrist"
    fs.pipe_file(f"{chunks}/c.1.0.0.0", fs.cat_file(f"{chunks}/c.0.0.0.0"))
    problems = ReplayStore.open(url, storage_options=s3_options).verify().problems
    assert [(p.episode_id, p.array, p.chunk) for p in problems] == [(episode_id, "images/wrist", 1)]
