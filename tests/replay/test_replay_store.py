from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import zarr
from episode_data import SCHEMA, add_steps, assert_episode_matches, expected_episode, write_episode

from replay import (
    CameraSchema,
    NotAStoreError,
    Outcome,
    ReplayError,
    ReplayStore,
    ReplayWriteError,
    SchemaMismatchError,
    SchemaVersionError,
    StoreSchema,
)


def test_round_trip_with_metadata(store):
    episode_id = write_episode(
        store, seed=1, length=23, round=2, intervention_every=5, outcome=Outcome.FAILURE
    )
    assert store.episode_ids() == [episode_id]
    assert_episode_matches(store, episode_id, 1, 23, intervention_every=5)
    meta = store.record(episode_id).meta
    assert (meta.length, meta.round, meta.outcome, meta.labelled_by) == (23, 2, Outcome.FAILURE, "test")
    assert (meta.robot_id, meta.task, meta.policy_version, meta.schema_version) == ("arm0", "seed-1", "p0", 1)
    assert meta.intervention_steps == 5 and meta.has_ground_truth
    assert meta.start_time <= meta.end_time
    # Reopening from the URL alone gives the same schema and data.
    again = ReplayStore.open(store.location.url)
    assert again.schema == SCHEMA
    assert_episode_matches(again, episode_id, 1, 23, intervention_every=5)


def test_images_are_blosc_zstd_in_small_chunks(store):
    episode_id = write_episode(store, seed=0, length=9)
    image = store.open_episode(episode_id)["images/front"]
    assert image.chunks == (SCHEMA.image_chunk_steps, 24, 32, 3)
    (codec,) = image.compressors
    assert isinstance(codec, zarr.codecs.BloscCodec) and codec.cname.value == "zstd"


def test_episode_invisible_until_committed(store):
    data = expected_episode(3, 20)
    writer = store.episode_writer(robot_id="arm0", round=0, policy_version="p0", task="t", flush_steps=8)
    add_steps(writer, data, 0, 17)
    writer.flush()
    assert writer.steps_flushed == 17
    assert store.episode_ids() == []
    (entry,) = store.in_flight()
    assert (entry.episode_id, entry.status, entry.steps_flushed) == (writer.episode_id, "writing", 17)
    add_steps(writer, data, 17, 20)
    writer.commit(Outcome.SUCCESS, "human")
    assert store.episode_ids() == [writer.episode_id] and store.in_flight() == []
    assert_episode_matches(store, writer.episode_id, 3, 20)


def test_foreground_writer_matches_background(store):
    episode_id = write_episode(store, seed=4, length=13, background=False, flush_steps=4)
    assert_episode_matches(store, episode_id, 4, 13)
    assert store.verify().ok


def test_step_that_disagrees_with_schema_is_rejected(store):
    data = expected_episode(0, 1)
    with store.episode_writer(robot_id="a", round=0, policy_version="p", task="t") as writer:
        images = {c: data[f"images/{c}"][0] for c in SCHEMA.camera_names}
        with pytest.raises(SchemaMismatchError, match="front"):
            writer.add_step(
                {**images, "front": images["front"][:, :, :2]}, data["state"][0], data["action"][0], 0.0
            )
        with pytest.raises(SchemaMismatchError, match="wrist"):
            writer.add_step({"front": images["front"]}, data["state"][0], data["action"][0], 0.0)
        with pytest.raises(SchemaMismatchError, match="state"):
            writer.add_step(images, np.zeros(4), data["action"][0], 0.0)
        with pytest.raises(ReplayError, match="no steps"):
            writer.commit()


def test_leaving_block_without_commit_aborts_and_keeps_data(store):
    data = expected_episode(0, 10)
    with (
        pytest.raises(RuntimeError, match="robot fell over"),
        store.episode_writer(robot_id="a", round=0, policy_version="p", task="t", flush_steps=4) as writer,
    ):
        add_steps(writer, data, 0, 10)
        raise RuntimeError("robot fell over")
    assert store.episode_ids() == []
    (entry,) = store.in_flight()
    assert entry.status == "aborted" and "robot fell over" in entry.reason and entry.steps_flushed == 8
    with pytest.raises(ReplayError, match="aborted"):
        writer.add_step({}, data["state"][0], data["action"][0], 0.0)
    assert not store.verify(check_data=False).ok
    assert store.quarantine_torn() == [writer.episode_id]
    report = store.verify()
    assert report.ok and report.quarantined == [writer.episode_id]


def test_discarded_abort_leaves_nothing(store):
    writer = store.episode_writer(robot_id="a", round=0, policy_version="p", task="t")
    add_steps(writer, expected_episode(0, 5), 0, 5)
    writer.abort("operator reset", discard=True)
    assert store.in_flight() == [] and store.episode_ids() == []


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "commit.json"
    }


def test_failed_write_fails_loudly_and_committed_data_stays_intact(store, monkeypatch):
    kept = write_episode(store, seed=7, length=12)
    before = _tree_digest(Path(store.location.path("episodes")))

    def disk_full(self, key, value):
        raise OSError(errno.ENOSPC, "No space left on device")

    data = expected_episode(8, 40)
    with (
        pytest.raises(ReplayWriteError, match="No space left"),
        store.episode_writer(robot_id="a", round=0, policy_version="p", task="t", flush_steps=4) as writer,
    ):
        add_steps(writer, data, 0, 10)
        monkeypatch.setattr(zarr.storage.LocalStore, "set", disk_full)
        add_steps(writer, data, 10, 40)
        writer.commit()
    with pytest.raises(ReplayWriteError, match="could not start"):
        store.episode_writer(robot_id="a", round=0, policy_version="p", task="t")
    monkeypatch.undo()
    assert store.episode_ids() == [kept]
    assert _tree_digest(Path(store.location.path("episodes"))) == before
    assert_episode_matches(store, kept, 7, 12)
    assert [e.status for e in store.in_flight()] == ["aborted", "aborted"]


def test_relabel_rewrites_only_the_record(store):
    episode_id = write_episode(store, seed=2, length=8, outcome=Outcome.UNLABELLED)
    assert store.record(episode_id).meta.labelled_by is None
    store.set_outcome(episode_id, "success", labelled_by="operator:ana")
    fresh = ReplayStore.open(store.location.url).record(episode_id).meta
    assert (fresh.outcome, fresh.labelled_by) == (Outcome.SUCCESS, "operator:ana")
    assert_episode_matches(store, episode_id, 2, 8)


def test_derived_columns_never_touch_recorded_data(store):
    ids = [write_episode(store, seed=s, length=6 + s) for s in range(2)]
    recorded = Path(store.location.path("episodes"))
    before = _tree_digest(recorded)
    for i, episode_id in enumerate(ids):
        n = 6 + i
        store.write_derived("value", "v1", episode_id, np.linspace(-1, 0, n))
        store.write_derived("value", "v2", episode_id, np.full(n, 0.5))
        store.write_derived("advantage", "run-1", episode_id, np.arange(n) - 2.0)
        store.write_derived("indicator", "run-1", episode_id, np.arange(n) >= 2)
    store.write_derived("value", "v1", ids[0], np.zeros(6))  # rewrite replaces atomically
    assert _tree_digest(recorded) == before
    assert store.derived_keys("value") == ["v1", "v2"]
    assert store.derived_episode_ids("advantage", "run-1") == set(ids)
    np.testing.assert_array_equal(store.read_derived("value", "v1", ids[0]), np.zeros(6, np.float32))
    np.testing.assert_allclose(store.read_derived("value", "v1", ids[1]), np.linspace(-1, 0, 7), rtol=1e-6)
    np.testing.assert_array_equal(store.read_derived("value", "v2", ids[1]), np.full(7, 0.5, np.float32))
    assert store.read_derived("indicator", "run-1", ids[1]).dtype == np.bool_
    assert store.read_derived("value", "v3", ids[0]) is None
    with pytest.raises(SchemaMismatchError, match="shape"):
        store.write_derived("value", "v1", ids[0], np.zeros(5))
    with pytest.raises(ValueError, match="kind"):
        store.write_derived("reward", "v1", ids[0], np.zeros(6))
    with pytest.raises(ValueError, match="key"):
        store.write_derived("value", "../escape", ids[0], np.zeros(6))
    assert_episode_matches(store, ids[0], 0, 6)


def test_not_a_store_and_other_schema_versions_are_clear_errors(tmp_path):
    with pytest.raises(NotAStoreError, match="no store.json"):
        ReplayStore.open(str(tmp_path))
    (tmp_path / "store.json").write_text("not json")
    with pytest.raises(NotAStoreError, match="not JSON"):
        ReplayStore.open(str(tmp_path))
    (tmp_path / "store.json").write_text(json.dumps({"format": "zarr"}))
    with pytest.raises(NotAStoreError, match="format"):
        ReplayStore.open(str(tmp_path))
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"jpeg")
    with pytest.raises(NotAStoreError, match="not empty"):
        ReplayStore.create(str(tmp_path / "photos"), SCHEMA)
    store = ReplayStore.create(str(tmp_path / "s"), SCHEMA)
    body = json.loads(Path(store.location.path("store.json")).read_text())
    Path(store.location.path("store.json")).write_text(json.dumps({**body, "schema_version": 99}))
    with pytest.raises(SchemaVersionError, match="version 99"):
        ReplayStore.open(store.location.url)


def test_open_or_create(tmp_path):
    url = str(tmp_path / "s")
    first = ReplayStore.open_or_create(url, SCHEMA)
    assert ReplayStore.open_or_create(url, SCHEMA).schema == first.schema
    other = StoreSchema((CameraSchema("top", 8, 8),), ("q",), ("a",), 5.0)
    with pytest.raises(SchemaMismatchError):
        ReplayStore.open_or_create(url, other)
    with pytest.raises(FileExistsError):
        ReplayStore.create(url, SCHEMA)


def test_store_pickles_by_url(store):
    episode_id = write_episode(store, seed=5, length=5)
    clone = pickle.loads(pickle.dumps(store))
    assert clone.location.url == store.location.url and clone.episode_ids() == [episode_id]


def test_task_stats_match_numpy(store):
    for seed in range(3):
        write_episode(store, seed=seed, length=10 + seed, task="fold")
    states = np.concatenate([expected_episode(s, 10 + s)["state"] for s in range(3)])
    stats = store.task_stats()["fold"]["state"]
    np.testing.assert_allclose(stats["mean"], states.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["std"], states.std(0), rtol=1e-4)
    np.testing.assert_array_equal(stats["min"], states.min(0))


def test_episode_ids_are_unique_and_staging_is_per_writer(store):
    writers = [
        store.episode_writer(robot_id=f"arm{i}", round=0, policy_version="p", task="t") for i in range(3)
    ]
    assert len({w.episode_id for w in writers}) == 3
    assert sorted(os.listdir(store.location.path("staging"))) == sorted(w.episode_id for w in writers)
    for w in writers:
        w.abort(discard=True)


def test_open_or_create_race_between_processes_ends_with_one_store(tmp_path):
    import multiprocessing as mp

    url = str(tmp_path / "raced")
    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.starmap(_open_or_create_layout, [(url,)] * 8)
    assert results == [SCHEMA.camera_names] * 8


def _open_or_create_layout(url):
    from replay import ReplayStore

    return ReplayStore.open_or_create(url, SCHEMA).schema.camera_names
