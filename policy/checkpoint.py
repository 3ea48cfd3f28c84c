"""Versioned policy checkpoints: safetensors weights, config, normalisation statistics and provenance together.

Layout under a checkpoint root (one per training run)::

    <root>/v000003/config.json        PolicyConfig (rebuilds the architecture and the deployment behaviour)
    <root>/v000003/model.safetensors  every parameter and persistent buffer
    <root>/v000003/norm_stats.json    state/action mean and std of the training data (robot units)
    <root>/v000003/meta.json          format, version, labelling run, extraction method, round, base, wall time

Versions are published through ``checkpoints.publish_version`` (staged, then renamed into place), so an actor
polling for a new policy never sees a half-written version.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from checkpoints import CheckpointError, publish_version, resolve_version
from checkpoints import list_versions as _list_versions
from policy.base import Normalizer, PolicyModel
from policy.config import PolicyConfig
from policy.deploy import Policy
from policy.factory import build_model

FORMAT = "vivarl-policy"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
NORM_STATS_FILE = "norm_stats.json"
META_FILE = "meta.json"
REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE, NORM_STATS_FILE, META_FILE)


class PolicyCheckpointError(CheckpointError):
    """A policy checkpoint directory is missing, incomplete or of an unknown format."""


def list_versions(root: str | Path) -> list[int]:
    """Complete policy versions under ``root``, ascending."""
    return _list_versions(root, REQUIRED_FILES)


def save_policy(
    model: PolicyModel,
    normalizer: Normalizer,
    root: str | Path,
    version: int,
    *,
    labelling_run: str | None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write version ``version`` under ``root`` atomically and return its folder.

    ``labelling_run`` is the derived-column key of the advantage labels the policy was trained on (None: none,
    e.g. plain BC); ``extra`` adds provenance such as the extraction method, round and base checkpoint.
    """

    def write(staging: Path) -> None:
        model.config.save_json(staging / CONFIG_FILE)
        # Tied or shared tensors would make safetensors refuse; contiguous clones keep every entry independent.
        state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
        save_file(state, str(staging / WEIGHTS_FILE))
        (staging / NORM_STATS_FILE).write_text(json.dumps(normalizer.to_dict(), indent=2))
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": version,
            "kind": model.config.kind,
            "labelling_run": labelling_run,
            "saved_at": time.time(),
            **(extra or {}),
        }
        (staging / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))

    return publish_version(root, version, write, "policy checkpoint")


def resolve_checkpoint(path: str | Path) -> Path:
    """A version folder itself, or the newest complete version under a checkpoint root."""
    return resolve_version(path, REQUIRED_FILES, "policy checkpoint", PolicyCheckpointError)


def read_meta(path: str | Path) -> dict[str, Any]:
    meta = json.loads((resolve_checkpoint(path) / META_FILE).read_text())
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise PolicyCheckpointError(
            f"{path} is format {meta.get('format')} v{meta.get('format_version')}; "
            f"this code reads {FORMAT} v{FORMAT_VERSION}"
        )
    return meta


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[PolicyModel, Normalizer, dict]:
    """Model (in eval mode), normalizer and meta of a version folder or of the newest version under a root."""
    folder = resolve_checkpoint(path)
    meta = read_meta(folder)
    model = build_model(PolicyConfig.load_json(folder / CONFIG_FILE))
    model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    normalizer = Normalizer(json.loads((folder / NORM_STATS_FILE).read_text()))
    return model.to(device).eval(), normalizer, meta


def load_policy(path: str | Path, device: str | torch.device = "cpu", **config_overrides: Any) -> Policy:
    """A deployable ``Policy``; ``config_overrides`` change deployment fields (deploy_indicator, cfg_beta, ...)."""
    model, normalizer, meta = load_model(path, device)
    if config_overrides:
        model.config = PolicyConfig.from_dict({**model.config.to_dict(), **config_overrides})
    return Policy(
        model,
        normalizer,
        labelling_run=meta.get("labelling_run"),
        version=int(meta["version"]),
        metadata=meta,
    )
