"""Policy checkpoints as one in-memory blob, so weights reach every actor through Ray's object store.

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
        raise FileNotFoundError(f"policy checkpoint folder {folder} does not exist")
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
    if not files:
        raise FileNotFoundError(f"policy checkpoint folder {folder} is empty")
    return PackedCheckpoint(version=version, files=files)


def unpack_checkpoint(packed: PackedCheckpoint, parent: str | Path | None = None) -> Path:
    """Write the files into a fresh folder (under ``parent`` or the system temp dir) and return it."""
    folder = Path(tempfile.mkdtemp(prefix=f"vivarl-policy-{packed.version}-", dir=parent))
    for name, data in packed.files.items():
        if "/" in name or name.startswith("."):
            raise ValueError(f"refusing to unpack checkpoint file with unsafe name {name!r}")
        (folder / name).write_bytes(data)
    return folder
