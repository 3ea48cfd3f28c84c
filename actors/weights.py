"""Checkpoints (policies, value models) as one in-memory blob, so weights reach every actor through Ray's object
store.

The driver packs a checkpoint folder once (``ray.put`` of the blob, one handle to every actor); each actor
unpacks it into a private temporary folder and loads it from there, so no node needs a shared filesystem.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PackedCheckpoint:
    version: str
    files: dict[str, bytes]


def pack_checkpoint(folder: str | Path, version: str) -> PackedCheckpoint:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist")
    # Relative POSIX paths: a value checkpoint keeps its backbone in subfolders.
    files = {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }
    if not files:
        raise FileNotFoundError(f"checkpoint folder {folder} is empty")
    return PackedCheckpoint(version=version, files=files)


def unpack_checkpoint(packed: PackedCheckpoint, parent: str | Path | None = None) -> Path:
    """Write the files into a fresh folder (under ``parent`` or the system temp dir) and return it."""
    folder = Path(tempfile.mkdtemp(prefix=f"vivarl-checkpoint-{packed.version}-", dir=parent))
    for name, data in packed.files.items():
        parts = name.split("/")
        if name.startswith("/") or any(part in ("", "..") or part.startswith(".") for part in parts):
            raise ValueError(f"refusing to unpack checkpoint file with unsafe name {name!r}")
        path = folder.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder
