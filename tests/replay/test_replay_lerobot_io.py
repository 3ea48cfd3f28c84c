from __future__ import annotations

import numpy as np
import pytest
from episode_data import SCHEMA, assert_episode_matches, expected_episode, write_episode

from replay import EpisodeFilter, Outcome, ReplayStore, SchemaMismatchError
from replay.lerobot_io import export_to_lerobot, import_from_lerobot

lerobot_dataset = pytest.importorskip("lerobot.datasets.lerobot_dataset")
LeRobotDataset = lerobot_dataset.LeRobotDataset


def test_export_loads_in_lerobot_with_matching_values(store, tmp_path):
    ids = [
        write_episode(store, 0, 7, round=1, outcome=Outcome.SUCCESS, intervention_every=3),
        write_episode(store, 1, 5, round=1, outcome=Outcome.FAILURE),
        write_episode(store, 2, 6, round=2, outcome=Outcome.SUCCESS),
    ]
    exported = export_to_lerobot(
        store, tmp_path / "lr", repo_id="test/export", episode_filter=EpisodeFilter(rounds=(1,))
    )
    assert exported == ids[:2]
    dataset = LeRobotDataset("test/export", root=tmp_path / "lr")
    assert (dataset.num_episodes, dataset.num_frames, dataset.fps) == (2, 12, 10)
    for lerobot_index, (seed, n) in enumerate([(0, 7), (1, 5)]):
        want = expected_episode(seed, n, intervention_every=3 if seed == 0 else 0)
        first = int(dataset.meta.episodes[lerobot_index]["dataset_from_index"])
        for t in range(n):
            item = dataset[first + t]
            for cam in SCHEMA.camera_names:
                image = (item[f"observation.images.{cam}"].permute(1, 2, 0) * 255).round().byte().numpy()
                np.testing.assert_array_equal(image, want[f"images/{cam}"][t])
            np.testing.assert_array_equal(item["observation.state"].numpy(), want["state"][t])
            np.testing.assert_array_equal(item["action"].numpy(), want["action"][t])
            assert float(item["progress"]) == pytest.approx(float(want["progress"][t]))
            assert bool(item["intervention"]) == bool(want["intervention"][t])
            assert item["task"] == f"seed-{seed}" and int(item["episode_index"]) == lerobot_index
    assert dataset.meta.features["observation.state"]["names"] == list(SCHEMA.state_names)


def test_export_then_import_round_trips_exactly(store, tmp_path):
    originals = [write_episode(store, 3, 9, outcome=Outcome.FAILURE), write_episode(store, 4, 4)]
    assert export_to_lerobot(store, tmp_path / "lr", repo_id="test/rt") == originals  # oldest first
    target = str(tmp_path / "imported")
    new_ids = import_from_lerobot(tmp_path / "lr", target, repo_id="test/rt", round=0)
    imported = ReplayStore.open(target)
    assert imported.schema.same_layout(SCHEMA) and imported.episode_ids() == sorted(new_ids)
    for new_id, (seed, n, outcome) in zip(
        new_ids, [(3, 9, Outcome.FAILURE), (4, 4, Outcome.SUCCESS)], strict=True
    ):
        assert_episode_matches(imported, new_id, seed, n)
        meta = imported.record(new_id).meta
        assert (meta.round, meta.outcome, meta.task) == (0, outcome, f"seed-{seed}")
    assert set(new_ids).isdisjoint(originals)


def teleop_dataset(root):
    """An empty LeRobotDataset as LeRobot's recording tools make one: an 8x12 camera and two joints at 15 fps."""
    features = {
        "observation.images.top": {
            "dtype": "image",
            "shape": (8, 12, 3),
            "names": ["height", "width", "channels"],
        },
        "observation.state": {"dtype": "float32", "shape": (2,), "names": ["j0", "j1"]},
        "action": {"dtype": "float32", "shape": (2,), "names": ["j0", "j1"]},
    }
    return LeRobotDataset.create("test/teleop", fps=15, features=features, root=root, use_videos=False)


def test_import_demonstrations_recorded_with_lerobot_tools(tmp_path):
    demos = teleop_dataset(tmp_path / "demos")
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(2):
        for _ in range(4):
            frame = {
                "observation.images.top": rng.integers(0, 256, (8, 12, 3), dtype=np.uint8),
                "observation.state": rng.standard_normal(2).astype(np.float32),
                "action": rng.standard_normal(2).astype(np.float32),
            }
            frames.append(frame)
            demos.add_frame({**frame, "task": "stack cups"})
        demos.save_episode()
    demos.finalize()

    store = ReplayStore.create(str(tmp_path / "store"), SCHEMA)
    with pytest.raises(SchemaMismatchError):
        import_from_lerobot(tmp_path / "demos", store, repo_id="test/teleop")
    ids = import_from_lerobot(tmp_path / "demos", str(tmp_path / "demo-store"), repo_id="test/teleop")
    imported = ReplayStore.open(str(tmp_path / "demo-store"))
    assert imported.schema.camera_names == ("top",) and imported.schema.control_hz == 15
    assert len(ids) == 2
    for k, episode_id in enumerate(ids):
        meta = imported.record(episode_id).meta
        assert (meta.round, meta.outcome, meta.labelled_by, meta.task, meta.length) == (
            0,
            Outcome.SUCCESS,
            "lerobot-import",
            "stack cups",
            4,
        )
        data = imported.read_episode(episode_id)
        for t in range(4):
            np.testing.assert_array_equal(data["images/top"][t], frames[4 * k + t]["observation.images.top"])
            np.testing.assert_array_equal(data["state"][t], frames[4 * k + t]["observation.state"])
        np.testing.assert_allclose(data["timestamp"], np.arange(4) / 15, atol=1e-6)
        assert np.isnan(data["progress"]).all() and not meta.has_ground_truth


def test_imported_teleop_recordings_are_demonstrations_fitted_to_the_arms_frames(tmp_path):
    # Recorded with LeRobot's tools at 8x12 (a 2:3 camera); the arm's store keeps 8x8 frames.
    demos = teleop_dataset(tmp_path / "demos")
    for _ in range(3):
        demos.add_frame(
            {
                "observation.images.top": np.full((8, 12, 3), 200, dtype=np.uint8),
                "observation.state": np.zeros(2, dtype=np.float32),
                "action": np.zeros(2, dtype=np.float32),
                "task": "stack cups",
            }
        )
    demos.save_episode()
    demos.finalize()
    from replay.schema import CameraSchema, StoreSchema

    arm = StoreSchema(
        cameras=(CameraSchema("top", 8, 8),),
        state_names=("j0", "j1"),
        action_names=("j0", "j1"),
        control_hz=15.0,
    )
    store = ReplayStore.create(str(tmp_path / "arm"), arm)
    (episode_id,) = import_from_lerobot(tmp_path / "demos", store, repo_id="test/teleop")
    meta = store.record(episode_id).meta
    assert meta.purpose == "demo" and meta.round == 0 and meta.outcome is Outcome.SUCCESS
    frame = store.read_episode(episode_id, ["images/top"])["images/top"][0]
    # Letterboxed, not squashed: the 12-wide frame scaled to 8 wide leaves black bands above and below.
    assert frame.shape == (8, 8, 3)
    assert (frame[0] == 0).all() and (frame[-1] == 0).all() and (frame[4] == 200).all()
