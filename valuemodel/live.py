"""Scoring single frames with a published value checkpoint, as an arm's actor does during an episode.

``FrameScorer`` loads a version folder (weights, config, norm stats) and returns the value of one observation: its
cameras' current frames and its proprioception, normalised with the checkpoint's own statistics. ViVa predicts it
with its single denoising step; the static baseline directly. WVM reads windows of frames, not one, and is refused
here with that reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from valuemodel.checkpoint import load_checkpoint, load_norm_stats
from valuemodel.interface import ValueBatch
from valuemodel.norm_stats import ValueDataStats, normalise_state


class FrameScorer:
    """``score(images, state)`` -> the value in the model's range [-1, 1] (higher is better) of one frame."""

    def __init__(self, folder: str | Path, task: str, device: str = "cpu") -> None:
        self.model = load_checkpoint(folder, device=device)
        self.config = self.model.config
        if self.config.kind == "wvm":
            raise ValueError(
                "WVM scores windows of frames, not single ones: live scoring needs valuemodel kind viva or static"
            )
        self.stats = ValueDataStats.from_dict(load_norm_stats(folder))
        self.task = task
        self.task_id = torch.tensor([self.stats.task_id(task)], dtype=torch.long)
        self.device = device

    @torch.no_grad()
    def score(self, images: Mapping[str, np.ndarray], state: np.ndarray) -> float:
        missing = [c for c in self.config.cameras if c not in images]
        if missing:
            raise KeyError(f"the value model reads cameras {missing}, which the observation lacks")
        frames = {
            camera: torch.as_tensor(np.ascontiguousarray(images[camera]))
            .permute(2, 0, 1)[None]
            .to(self.device)
            for camera in self.config.cameras
        }
        batch = ValueBatch(
            task_id=self.task_id.to(self.device),
            images=frames,
            state=normalise_state(
                torch.as_tensor(state, dtype=torch.float32)[None], [self.task], self.stats
            ).to(self.device),
        )
        return float(self.model.predict(batch).value[0])
