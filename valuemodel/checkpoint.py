"""Versioned value-model checkpoints: safetensors weights, config JSON and normalisation statistics together.

Layout under a checkpoint root (one per training run)::

    <root>/v000003/config.json        ValueModelConfig (rebuilds the architecture)
    <root>/v000003/model.safetensors  every parameter and persistent buffer
    <root>/v000003/norm_stats.json    how states were normalised to [-1, 1] (needed before predict)
    <root>/v000003/meta.json          version, kind, wall time

A version is written into a temporary folder and renamed into place, so a reader (an actor polling for a new
value model) never sees a half-written version.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from valuemodel.base import CONFIG_FILE, WEIGHTS_FILE, ValueModelBase
from valuemodel.config import ValueModelConfig
from valuemodel.factory import model_class

NORM_STATS_FILE = "norm_stats.json"
META_FILE = "meta.json"
REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE, NORM_STATS_FILE, META_FILE)
VERSION_DIR = re.compile(r"^v(\d{6})$")


class CheckpointError(FileNotFoundError):
    """A checkpoint directory is missing or incomplete."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value).tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def version_dir(root: str | Path, version: int) -> Path:
    if version < 0:
        raise ValueError(f"version must be >= 0, got {version}")
    return Path(root) / f"v{version:06d}"


def list_versions(root: str | Path) -> list[int]:
    """Complete versions under ``root``, ascending."""
    root = Path(root)
    if not root.is_dir():
        return []
    versions = []
    for child in root.iterdir():
        match = VERSION_DIR.match(child.name)
        if match and all((child / f).is_file() for f in REQUIRED_FILES):
            versions.append(int(match.group(1)))
    return sorted(versions)


def save_checkpoint(
    model: ValueModelBase, root: str | Path, version: int, norm_stats: dict[str, Any]
) -> Path:
    """Write ``model`` as version ``version`` under ``root`` atomically; returns the version folder."""
    target = version_dir(root, version)
    if target.exists():
        raise FileExistsError(f"checkpoint version {version} already exists at {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".tmp-{target.name}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    model.save(staging)
    (staging / NORM_STATS_FILE).write_text(json.dumps(_jsonable(norm_stats), indent=2, sort_keys=True))
    meta = {"version": version, "kind": model.config.kind, "size": model.config.size, "saved_at": time.time()}
    (staging / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    os.replace(staging, target)
    return target


def resolve_checkpoint(path: str | Path) -> Path:
    """A version folder itself, or the newest complete version under a checkpoint root."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint at {path}: the directory does not exist")
    if (path / CONFIG_FILE).exists() or VERSION_DIR.match(path.name):
        missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
        if missing:
            raise CheckpointError(f"checkpoint {path} is incomplete: missing {missing}")
        return path
    versions = list_versions(path)
    if not versions:
        raise CheckpointError(f"{path} holds no complete checkpoint version (expected v000000-style folders)")
    return version_dir(path, versions[-1])


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> ValueModelBase:
    """The model of a version folder, or of the newest version under a root."""
    folder = resolve_checkpoint(path)
    config = ValueModelConfig.load_json(folder / CONFIG_FILE)
    return model_class(config.kind).load(folder, device=device)


def load_norm_stats(path: str | Path) -> dict[str, Any]:
    """The normalisation statistics saved beside a checkpoint (version folder or root)."""
    return json.loads((resolve_checkpoint(path) / NORM_STATS_FILE).read_text())


def checkpoint_version(path: str | Path) -> int:
    return int(json.loads((resolve_checkpoint(path) / META_FILE).read_text())["version"])
