"""Versioned policy checkpoints: safetensors weights, config, normalisation statistics and provenance together.

Layout under a checkpoint root (one per training run)::

    <root>/v000003/config.json        PolicyConfig (rebuilds the architecture and the deployment behaviour)
    <root>/v000003/model.safetensors  every parameter and persistent buffer
    <root>/v000003/norm_stats.json    state/action mean and std of the training data (robot units)
    <root>/v000003/meta.json          format, version, labelling run, extraction method, round, base, wall time

A version is written into a temporary folder and renamed into place, so an actor polling for a new policy never
sees a half-written version.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

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
VERSION_DIR = re.compile(r"^v(\d{6})$")


class PolicyCheckpointError(FileNotFoundError):
    """A checkpoint directory is missing, incomplete or of an unknown format."""


def version_dir(root: str | Path, version: int) -> Path:
    if version < 0:
        raise ValueError(f"version must be >= 0, got {version}")
    return Path(root) / f"v{version:06d}"


def list_versions(root: str | Path) -> list[int]:
    """Complete versions under ``root``, ascending."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = VERSION_DIR.match(child.name)
        if match and all((child / f).is_file() for f in REQUIRED_FILES):
            found.append(int(match.group(1)))
    return sorted(found)


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
    target = version_dir(root, version)
    if target.exists():
        raise FileExistsError(f"policy checkpoint version {version} already exists at {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".tmp-{target.name}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
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
    os.replace(staging, target)
    return target


def resolve_checkpoint(path: str | Path) -> Path:
    """A version folder itself, or the newest complete version under a checkpoint root."""
    path = Path(path)
    if not path.is_dir():
        raise PolicyCheckpointError(f"no policy checkpoint at {path}: the directory does not exist")
    if (path / CONFIG_FILE).exists() or VERSION_DIR.match(path.name):
        missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
        if missing:
            raise PolicyCheckpointError(f"policy checkpoint {path} is incomplete: missing {missing}")
        return path
    versions = list_versions(path)
    if not versions:
        raise PolicyCheckpointError(
            f"{path} holds no complete policy version (expected v000000-style folders)"
        )
    return version_dir(path, versions[-1])


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
