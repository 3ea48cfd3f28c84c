"""Deterministic episodes for replay tests: any process can regenerate what a writer wrote from its seed."""

from __future__ import annotations

import numpy as np

from replay import CameraSchema, Outcome, ReplayStore, StoreSchema

SCHEMA = StoreSchema(
    cameras=(CameraSchema("front", 24, 32), CameraSchema("wrist", 16, 16)),
    state_names=("x", "y", "z"),
    action_names=("dx", "dy"),
    control_hz=10.0,
    image_chunk_steps=4,
)


def expected_episode(seed: int, length: int, intervention_every: int = 0) -> dict[str, np.ndarray]:
    """Every recorded column of episode ``seed``; the task name carries the seed so readers can check."""
    rng = np.random.default_rng(seed)
    steps = np.arange(length)
    out = {
        f"images/{c.name}": rng.integers(0, 256, (length, *c.shape), dtype=np.uint8) for c in SCHEMA.cameras
    }
    out["state"] = (rng.standard_normal((length, 3)) + seed).astype(np.float32)
    out["action"] = rng.standard_normal((length, 2)).astype(np.float32)
    out["timestamp"] = 1.7e9 + seed * 1000 + steps / 10.0
    out["intervention"] = (steps % intervention_every == 0) if intervention_every else np.zeros(length, bool)
    out["progress"] = (steps / max(length - 1, 1)).astype(np.float32)
    out["stage"] = (steps // 10).astype(np.int16)
    return out


def add_steps(writer, data: dict[str, np.ndarray], start: int, stop: int) -> None:
    for t in range(start, stop):
        writer.add_step(
            {c: data[f"images/{c}"][t] for c in SCHEMA.camera_names},
            data["state"][t],
            data["action"][t],
            data["timestamp"][t],
            intervention=bool(data["intervention"][t]),
            progress=float(data["progress"][t]),
            stage=int(data["stage"][t]),
        )


def write_episode(
    store: ReplayStore,
    seed: int,
    length: int,
    *,
    outcome: Outcome = Outcome.SUCCESS,
    round: int = 0,
    task: str | None = None,
    robot_id: str = "arm0",
    intervention_every: int = 0,
    **writer_options,
) -> str:
    data = expected_episode(seed, length, intervention_every)
    with store.episode_writer(
        robot_id=robot_id, round=round, policy_version="p0", task=task or f"seed-{seed}", **writer_options
    ) as writer:
        add_steps(writer, data, 0, length)
        writer.commit(outcome, labelled_by="test")
    return writer.episode_id


def assert_episode_matches(store: ReplayStore, episode_id: str, seed: int, length: int, **kw) -> None:
    got = store.read_episode(episode_id)
    want = expected_episode(seed, length, **kw)
    assert set(got) == set(want)
    for name, values in want.items():
        np.testing.assert_array_equal(got[name], values, err_msg=f"{episode_id} {name}")
