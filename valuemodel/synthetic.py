"""Synthetic progress episodes for tests and benchmarks: images whose content encodes task progress.

Each camera renders progress differently (a square sliding left to right with a progress bar; a disc growing on a
colour that shifts), the state is a noisy smooth function of progress, and the episode kinds match the value
benchmarks: ``expert`` (monotone), ``hesitation`` (plateaus), ``retry`` (a V-shaped undo and redo) and
``failure`` (progress falls and never recovers). It is a stand-in for ``robot_io.sim`` at unit-test scale, not a
model of any robot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from valuemodel.config import ValueModelConfig
from valuemodel.interface import ValueBatch
from valuemodel.targets import episode_value_targets

EPISODE_KINDS = ("expert", "hesitation", "retry", "failure")
NUM_STAGES = 3
# The stand-in robot's spec: its camera names and state width.
SYNTHETIC_CAMERAS = ("front", "wrist")
SYNTHETIC_STATE_DIM = 6


def synthetic_config(size: str = "tiny", kind: str = "viva", **overrides: Any) -> ValueModelConfig:
    """``ValueModelConfig.preset`` with what it leaves to the robot taken from the synthetic robot's spec."""
    config = ValueModelConfig.preset(size, kind, **overrides)
    return config.with_robot_spec(SYNTHETIC_CAMERAS, SYNTHETIC_STATE_DIM)


@dataclass
class SyntheticEpisode:
    images: dict[str, np.ndarray]
    """camera -> (T, 3, H, W) uint8."""
    state: np.ndarray
    """(T, D) float32 in [-1, 1]."""
    progress: np.ndarray
    """(T,) ground-truth progress in [0, 1]."""
    stage: np.ndarray
    """(T,) completed stages (0 .. NUM_STAGES)."""
    success: bool
    kind: str
    task_id: int = 0

    def __len__(self) -> int:
        return int(self.progress.shape[0])


def progress_profile(rng: np.random.Generator, kind: str, length: int) -> np.ndarray:
    """(length,) ground-truth progress of one episode of ``kind``."""
    if kind not in EPISODE_KINDS:
        raise ValueError(f"kind must be one of {EPISODE_KINDS}, got {kind!r}")
    speed = 0.5 + rng.random(length)  # uneven speed, so progress is not a linear function of time
    if kind == "hesitation":
        for _ in range(rng.integers(1, 3)):
            start = rng.integers(length // 6, 2 * length // 3)
            speed[start : start + rng.integers(length // 8, length // 4)] = 0.0
    progress = np.concatenate([[0.0], np.cumsum(speed[:-1])])
    progress = progress / progress[-1]
    if kind == "retry":
        turn = rng.integers(length // 3, 2 * length // 3)
        depth = min(0.25, progress[turn])
        undo = length // 8
        dip = np.zeros(length)
        dip[turn : turn + undo] = np.linspace(0, depth, undo)
        dip[turn + undo : turn + 2 * undo] = np.linspace(depth, 0, undo)
        # Redo: stretch the rest so the episode still reaches 1.
        progress = np.clip(progress - dip, 0.0, 1.0)
    if kind == "failure":
        peak = rng.integers(length // 3, 2 * length // 3)
        drop = rng.uniform(0.2, 0.4)
        progress = progress * 0.8
        fall = min(peak + 5, length)
        progress[peak:fall] = np.linspace(progress[peak], max(0.0, progress[peak] - drop), fall - peak)
        progress[fall:] = progress[fall - 1] if fall > peak else progress[peak]
    return progress.astype(np.float32)


def render(progress: float, camera_index: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(3, size, size) uint8 frame showing ``progress`` the way camera ``camera_index`` sees it."""
    img = rng.normal(30, 8, size=(3, size, size))
    if camera_index % 2 == 0:
        side = size // 5
        x = int(progress * (size - side))
        y = size // 3
        img[:, y : y + side, x : x + side] = [[[220]], [[200]], [[60]]]
        img[:, size - 6 : size - 2, : max(1, int(progress * size))] = 180
    else:
        img[0] += 120 * progress
        img[2] += 120 * (1 - progress)
        yy, xx = np.mgrid[:size, :size]
        radius = 3 + progress * size / 3
        disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= radius**2
        img[1][disc] = 230
    return np.clip(img, 0, 255).astype(np.uint8)


def make_episode(
    rng: np.random.Generator,
    kind: str = "expert",
    cameras: tuple[str, ...] = SYNTHETIC_CAMERAS,
    image_size: int = 64,
    state_dim: int = SYNTHETIC_STATE_DIM,
    length_range: tuple[int, int] = (40, 60),
    task_id: int = 0,
) -> SyntheticEpisode:
    length = int(rng.integers(length_range[0], length_range[1] + 1))
    progress = progress_profile(rng, kind, length)
    images = {
        cam: np.stack([render(float(p), i, image_size, rng) for p in progress])
        for i, cam in enumerate(cameras)
    }
    freqs = np.arange(1, state_dim + 1)
    state = np.sin(np.pi * freqs[None, :] * progress[:, None] / 2 + freqs[None, :])
    state = np.clip(state + rng.normal(0, 0.02, state.shape), -1, 1).astype(np.float32)
    stage = np.floor(np.maximum.accumulate(progress) * NUM_STAGES + 1e-6).clip(0, NUM_STAGES).astype(np.int64)
    return SyntheticEpisode(
        images, state, progress, stage, success=kind != "failure", kind=kind, task_id=task_id
    )


class SyntheticValueData:
    """Flattened frames of several episodes with RECAP value targets, for sampling ``ValueBatch``es.

    ``image_latents`` (camera -> (N, C, h, w)) can be filled once with a model's ``encode_images`` so training
    loops skip the VAE.
    """

    def __init__(self, episodes: list[SyntheticEpisode], horizon: int, max_episode_length: int) -> None:
        self.episodes = episodes
        self.cameras = list(episodes[0].images)
        starts = np.cumsum([0] + [len(e) for e in episodes])
        self.episode_start = starts[:-1]
        self.images = {
            c: torch.from_numpy(np.concatenate([e.images[c] for e in episodes])) for c in self.cameras
        }
        self.state = torch.from_numpy(np.concatenate([e.state for e in episodes]))
        future = [e.state[np.minimum(np.arange(len(e)) + horizon, len(e) - 1)] for e in episodes]
        self.future_state = torch.from_numpy(np.concatenate(future))
        targets = [episode_value_targets(len(e), e.success, max_episode_length) for e in episodes]
        self.value_target = torch.from_numpy(np.concatenate(targets))
        self.task_id = torch.from_numpy(np.concatenate([np.full(len(e), e.task_id) for e in episodes]))
        self.episode_of = np.concatenate([np.full(len(e), i) for i, e in enumerate(episodes)])
        self.image_latents: dict[str, torch.Tensor] | None = None

    def __len__(self) -> int:
        return int(self.state.shape[0])

    def cache_latents(self, encode, chunk: int = 32) -> None:
        """Fill ``image_latents`` with ``encode(images_dict) -> latents_dict`` (e.g. ``ViVaModel.encode_images``).

        Small chunks: the Wan VAE encodes a lone image at full resolution, and large batches run slower per image.
        """
        parts: dict[str, list[torch.Tensor]] = {c: [] for c in self.cameras}
        for start in range(0, len(self), chunk):
            out = encode({c: self.images[c][start : start + chunk] for c in self.cameras})
            for c in self.cameras:
                parts[c].append(out[c].cpu())
        self.image_latents = {c: torch.cat(v) for c, v in parts.items()}

    def batch(self, index: np.ndarray | torch.Tensor) -> ValueBatch:
        idx = torch.as_tensor(index, dtype=torch.long)
        latents = None if self.image_latents is None else {c: v[idx] for c, v in self.image_latents.items()}
        return ValueBatch(
            task_id=self.task_id[idx],
            images=None if latents is not None else {c: v[idx] for c, v in self.images.items()},
            image_latents=latents,
            state=self.state[idx],
            future_state=self.future_state[idx],
            value_target=self.value_target[idx],
        )

    def window_batch(self, index: np.ndarray, window: int, present: int, stride: int = 1) -> ValueBatch:
        """WVM windows: frame ``index`` sits at position ``present``; indices are clamped inside each episode."""
        idx = np.asarray(index)
        offsets = (np.arange(window) - present) * stride
        start = self.episode_start[self.episode_of[idx]]
        end = start + np.array([len(self.episodes[e]) for e in self.episode_of[idx]]) - 1
        frames = torch.from_numpy(np.clip(idx[:, None] + offsets[None, :], start[:, None], end[:, None]))
        source = self.image_latents if self.image_latents is not None else self.images
        windows = {c: v[frames] for c, v in source.items()}
        cached = self.image_latents is not None
        return ValueBatch(
            task_id=self.task_id[torch.as_tensor(idx)],
            video=None if cached else windows,
            video_latents=windows if cached else None,
            value_window=self.value_target[frames],
        )
