"""checkpoints: the versioned, atomically published folders that every vivarl checkpoint lives in.

Layout under a checkpoint root (one per training run)::

    <root>/v000000/   the first complete version
    <root>/v000003/   ... the newest one is what a reader loads

A version is written into a hidden staging folder beside its target and renamed into place, so a reader (an
actor polling for a new policy or value model) never sees a half-written version. What goes inside a version is
the owner's business: ``valuemodel.checkpoint`` and ``policy.checkpoint`` name their required files and write
them through ``publish_version``. Plain Python, no vivarl imports: both model packages depend on it.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

VERSION_DIR = re.compile(r"^v(\d{6})$")

__all__ = [
    "VERSION_DIR",
    "CheckpointError",
    "list_versions",
    "publish_version",
    "resolve_version",
    "version_dir",
    "version_name",
]


class CheckpointError(FileNotFoundError):
    """A checkpoint directory is missing, incomplete or of an unknown format."""


def version_name(version: int) -> str:
    """A version's folder name, which is also how runs, arms and episodes name the version: ``v000003``."""
    if version < 0:
        raise ValueError(f"version must be >= 0, got {version}")
    return f"v{int(version):06d}"


def version_dir(root: str | Path, version: int) -> Path:
    return Path(root) / version_name(version)


def list_versions(root: str | Path, required_files: Sequence[str]) -> list[int]:
    """Versions under ``root`` that hold every one of ``required_files``, ascending."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = VERSION_DIR.match(child.name)
        if match and all((child / f).is_file() for f in required_files):
            found.append(int(match.group(1)))
    return sorted(found)


def publish_version(root: str | Path, version: int, write: Callable[[Path], None], what: str) -> Path:
    """Call ``write(staging)`` to fill a fresh staging folder, then rename it to version ``version``.

    Refuses to replace an existing version: a published checkpoint may already be deployed or referenced by a
    round's record, so overwriting it would change what those records mean.
    """
    target = version_dir(root, version)
    if target.exists():
        raise FileExistsError(f"{what} version {version} already exists at {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".tmp-{target.name}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        write(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.replace(staging, target)
    return target


def resolve_version(
    path: str | Path,
    required_files: Sequence[str],
    what: str,
    error: type[CheckpointError] = CheckpointError,
) -> Path:
    """A version folder itself, or the newest complete version under a checkpoint root; ``error`` otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise error(f"no {what} at {path}: the directory does not exist")
    if (path / required_files[0]).exists() or VERSION_DIR.match(path.name):
        missing = [f for f in required_files if not (path / f).is_file()]
        if missing:
            raise error(f"{what} {path} is incomplete: missing {missing}")
        return path
    versions = list_versions(path, required_files)
    if not versions:
        raise error(f"{path} holds no complete {what} version (expected v000000-style folders)")
    return version_dir(path, versions[-1])
