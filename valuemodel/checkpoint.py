"""Versioned value-model checkpoints: safetensors weights, config JSON and normalisation statistics together.

Layout under a checkpoint root (one per training run)::

    <root>/v000003/config.json        ValueModelConfig (rebuilds the architecture)
    <root>/v000003/model.safetensors  every parameter and persistent buffer
    <root>/v000003/norm_stats.json    how states were normalised to [-1, 1] (needed before predict)
    <root>/v000003/meta.json          version, kind, size, wall time, and the layout's format
    <root>/v000003/backbone/          ViVa/WVM: the Wan transformer's and VAE's diffusers configs, so the version
                                      loads without the pretrained_dir it was trained from (which may have moved)

Versions are published through ``checkpoints.publish_version`` (staged, then renamed into place), so a reader
polling for a new value model never sees a half-written version.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from checkpoints import CheckpointError, publish_version, resolve_version, version_dir
from checkpoints import list_versions as _list_versions
from valuemodel.base import CONFIG_FILE, WEIGHTS_FILE, ValueModelBase
from valuemodel.config import ValueModelConfig
from valuemodel.factory import model_class

NORM_STATS_FILE = "norm_stats.json"
META_FILE = "meta.json"
REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE, NORM_STATS_FILE, META_FILE)
# The layout above. 1 (or none in meta.json): before backbone/ was kept; such versions still load from their
# pretrained_dir. A version written by a later layout is refused rather than half-read.
CHECKPOINT_FORMAT = 2

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "checkpoint_version",
    "list_versions",
    "load_checkpoint",
    "load_norm_stats",
    "resolve_checkpoint",
    "save_checkpoint",
    "version_dir",
]


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


def list_versions(root: str | Path) -> list[int]:
    """Complete value-model versions under ``root``, ascending."""
    return _list_versions(root, REQUIRED_FILES)


def save_checkpoint(
    model: ValueModelBase, root: str | Path, version: int, norm_stats: dict[str, Any]
) -> Path:
    """Write ``model`` as version ``version`` under ``root`` atomically; returns the version folder."""

    def write(staging: Path) -> None:
        model.save(staging)
        (staging / NORM_STATS_FILE).write_text(json.dumps(_jsonable(norm_stats), indent=2, sort_keys=True))
        meta = {
            "version": version,
            "kind": model.config.kind,
            "size": model.config.size,
            "saved_at": time.time(),
            "format": CHECKPOINT_FORMAT,
        }
        (staging / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))

    return publish_version(root, version, write, "checkpoint")


def resolve_checkpoint(path: str | Path) -> Path:
    """A version folder itself, or the newest complete version under a checkpoint root."""
    return resolve_version(path, REQUIRED_FILES, "checkpoint")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> ValueModelBase:
    """The model of a version folder, or of the newest version under a root."""
    folder = resolve_checkpoint(path)
    written_as = json.loads((folder / META_FILE).read_text()).get("format", 1)
    if written_as > CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"value checkpoint {folder} has format {written_as}, newer than this vivarl reads "
            f"({CHECKPOINT_FORMAT}): update vivarl on this machine to the version that wrote it"
        )
    config = ValueModelConfig.load_json(folder / CONFIG_FILE)
    return model_class(config.kind).load(folder, device=device)


def load_norm_stats(path: str | Path) -> dict[str, Any]:
    """The normalisation statistics saved beside a checkpoint (version folder or root)."""
    return json.loads((resolve_checkpoint(path) / NORM_STATS_FILE).read_text())


def checkpoint_version(path: str | Path) -> int:
    return int(json.loads((resolve_checkpoint(path) / META_FILE).read_text())["version"])
