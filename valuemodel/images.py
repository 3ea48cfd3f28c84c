"""Image preprocessing shared by every value model: dtype/range normalisation and resize-with-padding."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robot_io.images import letterbox_geometry


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [0, 1] -> float32 [0, 1]."""
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    if not images.is_floating_point():
        raise TypeError(f"images must be uint8 or floating point, got {images.dtype}")
    return images.float()


def fit_images(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3, height, width) float in [-1, 1].

    The image is letterboxed (``robot_io.images``: scaled to fit inside the target keeping its aspect ratio and
    centred on black padding), so a camera with another aspect ratio is not distorted (the ViVa paper
    resizes/pads to 384x320 the same way).
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    x = to_unit_range(images)
    src_h, src_w = x.shape[-2:]
    if (src_h, src_w) != (height, width):
        new_h, new_w, top, left = letterbox_geometry(src_h, src_w, height, width)
        shrinking = new_h < src_h or new_w < src_w
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=shrinking)
        x = F.pad(x, (left, width - new_w - left, top, height - new_h - top), value=0.0)
    return x.clamp(0.0, 1.0) * 2.0 - 1.0
