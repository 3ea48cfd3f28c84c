"""Interop with LeRobotDataset v3 (lerobot 0.4.4): export a selection of episodes, import demonstrations.

Both directions go through LeRobot's own API (``LeRobotDataset.create`` / ``add_frame`` / ``save_episode`` /
``finalize`` to write, ``LeRobotDataset(repo_id, root=...)`` to read), so whatever LeRobot loads is what we
produce. Images are exported as PNG frames by default: lossless, so values match exactly, and they load here
without a video decoder; ``use_videos=True`` writes LeRobot's AV1 videos instead (lossy, needs FFmpeg).

Export adds per-frame ``progress``, ``stage``, ``intervention`` and ``recorded_timestamp`` (LeRobot's own
``timestamp`` is frame_index / fps), and a sidecar ``meta/vivarl_episodes.json`` with each episode's replay
metadata, which LeRobot ignores and ``import_from_lerobot`` uses to keep ids, outcomes and robots.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from replay.sampler import EpisodeFilter
from replay.schema import CameraSchema, Outcome, SchemaMismatchError, StoreSchema
from replay.store import ReplayStore, ensure_store
from robot_io.images import letterbox

IMAGE_PREFIX = "observation.images."
SIDECAR = "meta/vivarl_episodes.json"
_EXTRA_COLUMNS = ("progress", "stage", "intervention", "recorded_timestamp")


def lerobot_features(schema: StoreSchema, use_videos: bool = False) -> dict[str, dict[str, Any]]:
    features: dict[str, dict[str, Any]] = {
        f"{IMAGE_PREFIX}{cam.name}": {
            "dtype": "video" if use_videos else "image",
            "shape": cam.shape,
            "names": ["height", "width", "channels"],
        }
        for cam in schema.cameras
    }
    features["observation.state"] = {
        "dtype": "float32",
        "shape": (schema.state_dim,),
        "names": list(schema.state_names),
    }
    features["action"] = {
        "dtype": "float32",
        "shape": (schema.action_dim,),
        "names": list(schema.action_names),
    }
    features["progress"] = {"dtype": "float32", "shape": (1,), "names": None}
    features["stage"] = {"dtype": "int64", "shape": (1,), "names": None}
    features["intervention"] = {"dtype": "bool", "shape": (1,), "names": None}
    features["recorded_timestamp"] = {"dtype": "float64", "shape": (1,), "names": None}
    return features


def export_to_lerobot(
    store: ReplayStore | str,
    root: str | Path,
    *,
    repo_id: str = "vivarl/replay-export",
    episode_filter: EpisodeFilter | None = None,
    episode_ids: Sequence[str] | None = None,
    use_videos: bool = False,
    robot_type: str | None = None,
) -> list[str]:
    """Write the selected committed episodes to a new LeRobotDataset at ``root``; returns the episode ids in
    LeRobot episode order. ``episode_ids`` wins over ``episode_filter``; neither exports everything."""
    store = ensure_store(store)
    records = store.records(reload=True)
    if episode_ids is not None:
        missing = [i for i in episode_ids if i not in records]
        if missing:
            raise KeyError(f"not committed in {store.location.url}: {missing}")
        chosen = list(episode_ids)
    else:
        chooser = episode_filter or EpisodeFilter()
        chosen = [i for i, r in records.items() if chooser.accepts(r)]
    if not chosen:
        raise ValueError("no committed episode matches the selection; nothing to export")
    schema = store.schema
    dataset = LeRobotDataset.create(
        repo_id,
        fps=max(1, round(schema.control_hz)),
        features=lerobot_features(schema, use_videos),
        root=root,
        robot_type=robot_type,
        use_videos=use_videos,
    )
    sidecar = []
    try:
        for lerobot_index, episode_id in enumerate(chosen):
            meta = records[episode_id].meta
            data = store.read_episode(episode_id)
            for t in range(meta.length):
                frame: dict[str, Any] = {
                    f"{IMAGE_PREFIX}{c}": data[f"images/{c}"][t] for c in schema.camera_names
                }
                frame["observation.state"] = data["state"][t]
                frame["action"] = data["action"][t]
                frame["progress"] = data["progress"][t : t + 1]
                frame["stage"] = data["stage"][t : t + 1].astype(np.int64)
                frame["intervention"] = data["intervention"][t : t + 1]
                frame["recorded_timestamp"] = data["timestamp"][t : t + 1]
                frame["task"] = meta.task
                dataset.add_frame(frame)
            dataset.save_episode()
            sidecar.append({"lerobot_episode_index": lerobot_index, **records[episode_id].to_json()["meta"]})
    finally:
        dataset.finalize()
    (Path(root) / SIDECAR).write_text(json.dumps(sidecar, indent=1))
    return chosen


def schema_from_lerobot(features: dict[str, dict[str, Any]], fps: float) -> StoreSchema:
    """The store schema matching a LeRobotDataset's features (cameras, state and action names)."""
    cameras = []
    for key, ft in features.items():
        if not key.startswith(IMAGE_PREFIX) or ft["dtype"] not in ("image", "video"):
            continue
        shape, names = list(ft["shape"]), list(ft.get("names") or [])
        h, w = (shape[1], shape[2]) if names and names[0] in ("channels", "channel") else (shape[0], shape[1])
        cameras.append(CameraSchema(key.removeprefix(IMAGE_PREFIX), int(h), int(w)))
    for key in ("observation.state", "action"):
        if key not in features:
            raise SchemaMismatchError(f"the LeRobot dataset has no '{key}' feature; cannot import it")

    def names(key: str) -> tuple[str, ...]:
        ft = features[key]
        given = ft.get("names")
        if isinstance(given, dict):  # older datasets nest names, e.g. {"motors": [...]}
            given = next(iter(given.values()))
        return tuple(given) if given else tuple(f"{key}_{i}" for i in range(int(ft["shape"][0])))

    return StoreSchema(
        cameras=tuple(cameras),
        state_names=names("observation.state"),
        action_names=names("action"),
        control_hz=fps,
    )


def _as_hwc_uint8(image: torch.Tensor) -> np.ndarray:
    """LeRobot returns float CHW in [0, 1] (PNG bytes / 255); this inverts it exactly for 8-bit sources."""
    return (image.permute(1, 2, 0) * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()


def import_from_lerobot(
    root: str | Path,
    store: ReplayStore | str,
    *,
    repo_id: str = "local/import",
    round: int = 0,
    robot_id: str = "lerobot-import",
    policy_version: str = "teleop",
    outcome: Outcome | str = Outcome.SUCCESS,
    labelled_by: str = "lerobot-import",
    purpose: str = "demo",
    storage_options: dict[str, Any] | None = None,
) -> list[str]:
    """Import every episode of the LeRobotDataset at ``root`` as committed episodes of ``round`` with ``purpose``
    ("demo" by default: teleoperated recordings are round 0's demonstrations, which the round driver counts). A
    store URL that holds no store yet is created with the dataset's schema; an existing store (the arm's) takes the
    dataset if its cameras, state and actions have the same names, and every frame is letterboxed to the store's
    camera size (``robot_io.images``, the rule the adapter, the policy and the value models use). Returns the new
    episode ids. Outcome and purpose come from the sidecar of a vivarl export when present, else from the
    arguments."""
    dataset = LeRobotDataset(repo_id, root=root)
    schema = schema_from_lerobot(dataset.meta.features, dataset.meta.fps)
    if not isinstance(store, ReplayStore):
        store = ReplayStore.open_or_create(store, schema, storage_options=storage_options)
    if not store.schema.same_layout(schema) and not store.schema.same_names(schema):
        raise SchemaMismatchError(
            f"dataset at {root} has {schema}, the store has {store.schema}: import a dataset recorded on the "
            "same arm (cameras, state and action names must match; image sizes may differ)"
        )
    sidecar_path = Path(root) / SIDECAR
    sidecar = (
        {e["lerobot_episode_index"]: e for e in json.loads(sidecar_path.read_text())}
        if sidecar_path.exists()
        else {}
    )
    features = dataset.meta.features
    lowdim = [k for k in ("observation.state", "action", "timestamp", *_EXTRA_COLUMNS) if k in features]
    imported = []
    for episode_index in range(dataset.meta.total_episodes):
        bounds = dataset.meta.episodes[episode_index]
        first, last = int(bounds["dataset_from_index"]), int(bounds["dataset_to_index"])
        task = dataset[first]["task"]  # also loads the parquet rows that hf_dataset serves
        # Per-step columns straight from the parquet rows (exact float64 timestamps); images through
        # LeRobot's own decoding.
        rows = dataset.hf_dataset.with_format(None).select_columns(lowdim)[first:last]
        columns = {k: np.asarray(v) for k, v in rows.items()}
        timestamps = columns.get("recorded_timestamp", columns["timestamp"]).reshape(-1)
        known = sidecar.get(episode_index, {})
        with store.episode_writer(
            robot_id=known.get("robot_id", robot_id),
            round=round,
            policy_version=known.get("policy_version", policy_version),
            task=task,
            purpose=known.get("purpose", purpose),
        ) as writer:
            for t, index in enumerate(range(first, last)):
                item = dataset[index]
                stage = int(columns["stage"].reshape(-1)[t]) if "stage" in columns else -1
                progress = float(columns["progress"].reshape(-1)[t]) if "progress" in columns else np.nan
                writer.add_step(
                    {
                        c.name: letterbox(_as_hwc_uint8(item[f"{IMAGE_PREFIX}{c.name}"]), c.height, c.width)
                        for c in store.schema.cameras
                    },
                    columns["observation.state"][t],
                    columns["action"][t],
                    float(timestamps[t]),
                    intervention="intervention" in columns and bool(columns["intervention"].reshape(-1)[t]),
                    progress=None if np.isnan(progress) else progress,
                    stage=None if stage < 0 else stage,
                )
            writer.commit(Outcome(known.get("outcome", outcome)), known.get("labelled_by") or labelled_by)
        imported.append(writer.episode_id)
    return imported
